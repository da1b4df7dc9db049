"""Crash cycles of a guest of another architecture that loads with our own `kdump-build load`.

The x86_64 tests run the host's own venv in the guest (9p over the host
root). A guest of another architecture cannot: it gets a root of its own
(tests/support/guestroot.py: Debian's Python and our dependencies for it)
over virtio 9p, with the repository and the build's output directory beside
it, and runs the CLI chrooted there. kexec-tools is not involved. The host
then reads the dump disk with debugfs and the vmcore with that
architecture's makedumpfile under qemu-user (`ArchInfo.qemu.user`).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.arch import ARCHES, Arch
from tests.support.guestroot import ROOTS, GuestRoot, guest_root
from tests.support.paths import REPO
from tests.support.qemu import Boot
from tests.support.qmp import PurgatoryHaltWatch, qmp_option
from tests.vm import harness

# Where the shares appear inside the guest's root.
GUEST_REPO = "/work/repo"
GUEST_OUTDIR = "/work/out"
_TAGS = {"root": "guestroot", "repo": "repo", "out": "out"}

# The main side of the device-tree guests' crash tests: status, a refused `file`
# load, our own load with its segment table, then the crash.
LOAD_AND_CRASH = f"""
kdump_build status
if kdump_build load {GUEST_OUTDIR} --method file; then
    echo "main: file load worked"
else
    echo "main: file load refused"
fi
if kdump_build load {GUEST_OUTDIR} --method auto --verbose; then
    echo "main: load finished"
else
    echo "main: load failed"
    poweroff -f
fi
echo "main: kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
kdump_build status
echo c > /proc/sysrq-trigger
echo "main: still alive after sysrq crash"
"""
# The same with the initrd segment corrupted after the purgatory's digest was taken.
LOAD_CORRUPTED_AND_CRASH = LOAD_AND_CRASH.replace(
    "--method auto --verbose", "--method segments --verbose --testing-corrupt-segment initrd"
)
# After the farewell the purgatory hashes ~36 MiB under TCG; a passing capture
# kernel prints its banner within seconds.
PARK_GRACE_SECONDS = 150

LOADER_INIT = (
    harness.NINEP_PROLOGUE
    + """R=/mnt/root
mkdir -p $R
O=trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144
mount -t 9p -o $O {root} $R || echo "main: mounting the guest root failed"
mount -t tmpfs tmpfs $R/work
mkdir -p $R{repo} $R{out}
mount -t 9p -o $O {repo_tag} $R{repo} || echo "main: mounting the repository failed"
mount -t 9p -o $O {out_tag} $R{out} || echo "main: mounting the build failed"
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mount -t tmpfs tmpfs $R/tmp
mount -t tmpfs tmpfs $R/run
echo 1 > /proc/sys/kernel/sysrq
in_guest() {{ chroot $R /usr/bin/env {environment} /bin/sh -c "cd {repo} && $1"; }}
kdump_build() {{ in_guest "python3 -m builder.cli $*"; }}
{body}
echo "main: end of script"
poweroff -f
"""
)


def loader_initrd(
    arch: Arch,
    kernel_version: str,
    root: GuestRoot,
    body: str,
    *,
    release: str | None = None,
    packages: tuple[str, ...] | None = None,
) -> bytes:
    """The main side's initrd: mount the shares, then run `body` (sh).

    `body` may call `kdump_build ARGS` (the CLI in the guest root, working
    directory the repository) and `in_guest "COMMAND"`; the build is at
    GUEST_OUTDIR. The kernel's 9p modules and busybox come from the root's
    release and packages unless `release` and `packages` name others (a main
    kernel of a newer release than the root's userspace).
    """
    environment = " ".join(
        f"{name}={shlex.quote(value)}" for name, value in root.environment(Path(GUEST_REPO)).items()
    )
    init = LOADER_INIT.format(
        root=_TAGS["root"], repo_tag=_TAGS["repo"], out_tag=_TAGS["out"], repo=GUEST_REPO,
        out=GUEST_OUTDIR, environment=environment, body=body,
    )  # fmt: skip
    spec = ROOTS[arch]
    return harness.ninep_initrd(
        kernel_version, init, spec.initrd_packages if packages is None else packages, arch=arch,
        release=spec.release if release is None else release,
    )  # fmt: skip


def shares(root: GuestRoot, outdir: Path) -> tuple[str, ...]:
    """QEMU arguments for the three read-only 9p shares."""
    arguments: list[str] = []
    for tag, path in ((_TAGS["root"], root.path), (_TAGS["repo"], REPO), (_TAGS["out"], outdir)):
        escaped = str(path).replace(",", ",,")  # QEMU's option syntax doubles a literal comma
        arguments += ["-virtfs", f"local,path={escaped},mount_tag={tag},security_model=none,"
                      "readonly=on,multidevs=remap"]  # fmt: skip
    return tuple(arguments)


@dataclass(frozen=True)
class GuestCrash:
    """A crash cycle: the boot, the vmcores on the dump disk, the root that ran the loader."""

    boot: Boot
    vmcores: list[Path]
    root: GuestRoot
    work: Path


def crash_cycle(
    arch: Arch,
    outdir: Path,
    kernel_version: str,
    body: str,
    work: Path,
    *,
    append: str,
    memory: str = "1G",
    cpus: int = 1,
    timeout: float = 900,
    extra: tuple[str, ...] = (),
    stop: Callable[[str, float], str | None] | None = None,
    main_initrd: Path | None = None,
) -> GuestCrash:
    """Boot the build's kernel with our loader's initrd, run `body`, then read the dump disk.

    `main_initrd`: one `loader_initrd` made before (then `body` is what it runs).
    """
    root = guest_root(arch)
    if main_initrd is None:
        main_initrd = work / "main-initrd.img"
        main_initrd.write_bytes(loader_initrd(arch, kernel_version, root, body))
    disk = work / "dump.img"
    harness.make_dump_disk(disk)
    boot = harness.run_qemu(
        outdir / "vmlinuz", main_initrd, f"console={_console(arch)} {append}", disk,
        memory=memory, cpus=cpus, log=work / "console.log", timeout=timeout,
        extra=shares(root, outdir) + extra, arch=arch, stop=stop,
    )  # fmt: skip
    files = harness.extract_disk(disk, work / "disk")
    return GuestCrash(boot, [path for path in files if path.name == "vmcore"], root, work)


def _console(arch: Arch) -> str:
    machine = ARCHES[arch].qemu
    assert machine is not None, f"no QEMU machine for {arch}"
    return machine.console


def dump_dmesg(root: GuestRoot, vmcore: Path, output: Path) -> str:
    """The crashed kernel's log, read by the guest architecture's makedumpfile under qemu-user."""
    machine = ARCHES[root.arch].qemu
    assert machine is not None
    subprocess.run(
        [machine.user, "-L", str(root.path), str(root.path / "usr/bin/makedumpfile"),
         "--dump-dmesg", str(vmcore), str(output)],
        check=True, capture_output=True,
    )  # fmt: skip
    return output.read_text(errors="replace")


def program_counter(registers: str) -> tuple[int, str]:
    """PC and exception level from an aarch64 `info registers` dump."""
    pc = re.search(r"\bPC=([0-9a-f]+)", registers)
    level = re.search(r"\bEL([0-3])([th])\b", registers)
    if pc is None:
        raise AssertionError(f"no PC in the register dump:\n{registers}")
    return int(pc.group(1), 16), f"EL{level.group(1)}{level.group(2)}" if level else "?"


def riscv_registers(registers: str) -> dict[str, int]:
    """The named CSRs and pc of a riscv `info registers` dump (" pc       00000000aef4605c")."""
    found = re.findall(r"^ ([a-z][a-z0-9]*)\s+([0-9a-f]{16})$", registers, re.MULTILINE)
    values = {name: int(value, 16) for name, value in found}
    if "pc" not in values:
        raise AssertionError(f"no pc in the register dump:\n{registers}")
    return values


def shown_segment(console: str, name: str) -> int:
    """The `mem` of segment `name` in `kdump-build load --verbose`'s table on the console."""
    match = re.search(rf"^{name}\s+(0x[0-9a-f]+)\s", console, re.MULTILINE)
    assert match, f"no {name} segment in the --verbose output"
    return int(match.group(1), 16)


def after_crash(console: str, farewell: str) -> str:
    """The console after the crashed kernel's last words before it jumps (`farewell`)."""
    assert farewell in console, console[-3000:]
    return console.split(farewell, 1)[1]


def corrupted_crash_cycle(
    arch: Arch, outdir: Path, kernel_version: str, work: Path, *, append: str, farewell: str
) -> tuple[GuestCrash, PurgatoryHaltWatch]:
    """A crash cycle with a corrupted segment, stopped once a CPU stays in purgatory_halt.

    The watch (tests/support/qmp.py, the same as x86_64's) samples over QMP from
    the crashed kernel's last line (`farewell`) on; `check_parked(watch)` says
    whether the CPU was parked. It gives up PARK_GRACE_SECONDS after `farewell`.
    """
    socket_path = work / "qmp.sock"
    watch = PurgatoryHaltWatch(arch, socket_path, after=farewell, grace=PARK_GRACE_SECONDS)
    crash = crash_cycle(arch, outdir, kernel_version, LOAD_CORRUPTED_AND_CRASH, work,
                        append=append, stop=watch, timeout=600,
                        extra=qmp_option(socket_path))  # fmt: skip
    return crash, watch


def check_auto_load(console: str) -> None:
    """`--method auto` took our segments and said why."""
    reason = "kexec_file_load is absent (ENOSYS: the kernel has no CONFIG_KEXEC_FILE)"
    assert f"{reason}: using kexec_load with our segments" in console, console[-5000:]
    assert "main: load finished" in console
    assert "loaded 5 segments with kexec_load" in console
    assert "main: kexec_crash_loaded=1" in console
    assert "--method auto would use: segments" in console


def check_file_refused(console: str) -> None:
    """`--method file` was refused: the kernel has no kexec_file_load (ENOSYS)."""
    assert "kexec_file_load: ENOSYS" in console, console[-5000:]
    assert "main: file load refused" in console


def check_capture_boot(
    console: str, outdir: Path, kernel_version: str, farewell: str, region_kib: int
) -> None:
    """The capture kernel booted with the build's command line, found the ELF core header
    where the layout put it, had exactly the crash region (linux,usable-memory-range) and
    saved the dump."""
    captured = after_crash(console, farewell)
    assert f"Linux version {kernel_version}" in captured, captured[-3000:]
    cmdline = (outdir / "cmdline.txt").read_text().strip()
    assert f"Kernel command line: {cmdline}" in captured
    assert f"at {shown_segment(console, 'elfcorehdr'):#x} for elfcorehdr" in captured
    memory = re.search(r"Memory: \d+K/(\d+)K available", captured)
    assert memory and int(memory.group(1)) == region_kib, memory
    assert "kdump: dump saved to" in captured


def check_dump(crash: GuestCrash, kernel_version: str) -> None:
    """One vmcore on the dump disk, whose log the guest architecture's makedumpfile reads."""
    assert crash.boot.returncode == 0, crash.boot.console[-4000:]
    assert len(crash.vmcores) == 1, crash.vmcores
    log = dump_dmesg(crash.root, crash.vmcores[0], crash.work / "dmesg.txt")
    assert "sysrq triggered crash" in log
    assert f"Linux version {kernel_version}" in log
