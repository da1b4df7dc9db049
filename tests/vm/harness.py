"""Boot real kernels in QEMU (TCG), crash them, and read back what was dumped.

The main side's initrd is built with kdump-build's own planner and writer
(dogfood); it loads the capture kernel with kexec-tools' `kexec -p` and
crashes through sysrq. The host then reads the dump disk with debugfs,
without mounting it, and checks the vmcore with makedumpfile.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.makedumpfile_roots import MakedumpfileRoot, prepare_root
from builder.arch import Arch
from builder.binfmt.cpio import write_cpio
from builder.compression import Compression, compress
from builder.image.fetch import fetch_packages
from builder.image.initrd import InitrdPlan
from builder.image.libraries import library_closure
from builder.image.modules import ModuleIndex
from builder.image.packages import PackageRoot
from builder.image.programs import busybox_applets
from tests.support import qemu
from tests.support.guestroot import ROOTS
from tests.support.qemu import Boot, qemu_command

# kexec-tools and the libraries of its kexec binary in Debian 12 (Xen support
# pulls in the libxen* family).
KEXEC_PACKAGES = (
    "busybox-static",
    "kexec-tools",
    "libc6",
    "libxenmisc4.17",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxenstore4",
    "libxentoollog1",
    "libxentoolcore1",
    "libyajl2",
    "libext2fs2",
    "libuuid1",
    "liblzma5",
    "libzstd1",
    "zlib1g",
    "libcom-err2",
    "libgcc-s1",
)
HOST_TOOLS = ("qemu-system-x86_64", "debugfs", "mkfs.ext4", "makedumpfile")

MAIN_INIT = """#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "main: crash region size $(cat /sys/kernel/kexec_crash_size)"
if ! kexec -p /capture/vmlinuz --initrd=/capture/initrd.img \\
        --command-line="$(cat /capture/cmdline.txt)"; then
    echo "main: kexec -p failed"
    poweroff -f
fi
echo "main: kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
echo "main: still alive after sysrq crash"
poweroff -f
"""


def missing_host_tools() -> list[str]:
    return [tool for tool in HOST_TOOLS if shutil.which(tool) is None]


def _main_side_plan(
    packages: tuple[str, ...], *, kexec: bool, arch: Arch = Arch.X86_64, release: str = ""
) -> tuple[InitrdPlan, PackageRoot]:
    """Busybox with its applet links (and kexec with its libraries) from Debian packages.

    `release`: the Debian release they come from ("": the host's); a merged-/usr
    release's packages need base-files among them for /bin and /lib.
    """
    fetched = fetch_packages(packages, arch, release=release)
    root = PackageRoot([package.path for package in fetched])
    plan = InitrdPlan()
    for directory in ("/dev", "/proc", "/sys", "/tmp"):
        plan.directory(directory)
    plan.chardev("/dev/console", 5, 1)
    plan.copy_from(root, "/bin/busybox")
    if kexec:
        plan.copy_from(root, "/sbin/kexec")
        for library in library_closure(root, ["/sbin/kexec"], arch, "kexec"):
            plan.copy_from(root, library)
    for applet in busybox_applets(root.read_bytes("/bin/busybox")):
        if not plan.has(f"/bin/{applet}"):
            plan.symlink(f"/bin/{applet}", "/bin/busybox")
    return plan, root


def busybox_plan(arch: Arch = Arch.X86_64) -> InitrdPlan:
    """A main side with busybox and its applet links only: no kexec-tools, no Python.

    From the release `arch`'s guest root comes from (tests/support/guestroot.py:
    Debian 13 for riscv64, with base-files for its merged /usr), else Debian 12's.
    """
    spec = ROOTS.get(arch)
    packages, release = (spec.initrd_packages, spec.release) if spec else (("busybox-static",), "")
    plan, _ = _main_side_plan(packages, kexec=False, arch=arch, release=release)
    return plan


def build_main_initrd(capture_dir: Path) -> bytes:
    """The main kernel's initrd: busybox, kexec and the capture files, no modules."""
    plan, _ = _main_side_plan(KEXEC_PACKAGES, kexec=True)
    for name in ("vmlinuz", "initrd.img", "cmdline.txt"):
        plan.file(f"/capture/{name}", (capture_dir / name).read_bytes())
    plan.file("/init", MAIN_INIT.encode(), 0o755)
    return compress(write_cpio(plan.members()), Compression.ZSTD, 3)


# The guest mounts the host's / read-only over virtio 9p (as virtme-ng and drgn's
# vmtest do) and runs the project's own Python from it, chrooted: the venv and
# the repository are at the same paths inside.
HOSTROOT_TAG = "hostroot"
NINEP_MODULES = ("virtio_pci", "9pnet_virtio", "9p")

# The start of a 9p main side's /init: the kernel file systems, then the modules of
# /etc/modules-load in order (`ninep_initrd` writes both).
NINEP_PROLOGUE = """#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /etc/modules-load); do
    insmod "$module" || echo "main: insmod $module failed"
done
"""

HOSTROOT_INIT = (
    NINEP_PROLOGUE
    + """mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 {tag} /host \\
    || echo "main: mounting the host root failed"
mount -t proc proc /host/proc || echo "main: /host/proc not mounted"
mount -t sysfs sysfs /host/sys || echo "main: /host/sys not mounted"
mount -t devtmpfs devtmpfs /host/dev || echo "main: /host/dev not mounted"
echo 1 > /proc/sys/kernel/sysrq
in_host() {{ chroot /host /usr/bin/env PYTHONDONTWRITEBYTECODE=1 /bin/sh -c "cd {repo} && $1"; }}
{body}
echo "main: end of script"
poweroff -f
"""
)


def build_hostroot_initrd(
    kernel_version: str,
    body: str,
    repo: Path,
    *,
    kexec: bool = True,
    modules: tuple[str, ...] = NINEP_MODULES,
) -> bytes:
    """A main-side initrd that mounts the host root over 9p and runs `body` (sh).

    `body` may call `in_host "COMMAND"` to run a shell command chrooted into
    the host root with `repo` as the working directory. With `kexec`, the
    initrd also carries kexec-tools (for side-by-side comparisons); `modules`
    are loaded in order (the 9p ones and any more).
    """
    packages = KEXEC_PACKAGES if kexec else ("busybox-static",)
    init = HOSTROOT_INIT.format(tag=HOSTROOT_TAG, repo=repo, body=body)
    return ninep_initrd(kernel_version, init, packages, kexec=kexec, modules=modules)


def ninep_initrd(
    kernel_version: str,
    init: str,
    packages: tuple[str, ...] = ("busybox-static",),
    *,
    kexec: bool = False,
    arch: Arch = Arch.X86_64,
    release: str = "",
    modules: tuple[str, ...] = NINEP_MODULES,
) -> bytes:
    """A main-side initrd with busybox and the virtio 9p modules (or `modules`), whose
    /init is `init`.

    The modules, in load order, are listed in /etc/modules-load; the packages
    come from Debian `release` ("": the host's).
    """
    plan, root = _main_side_plan(
        (*packages, f"linux-image-{kernel_version}"), kexec=kexec, arch=arch, release=release
    )
    stored = []
    for module in ModuleIndex(root, kernel_version).load_order(modules, "9p modules"):
        path = module.path.rsplit(".ko", 1)[0] + ".ko"
        plan.file(path, module.elf)
        stored.append(path)
    plan.file("/etc/modules-load", ("\n".join(stored) + "\n").encode())
    plan.file("/init", init.encode(), 0o755)
    return compress(write_cpio(plan.members()), Compression.ZSTD, 3)


def make_dump_disk(
    path: Path, size_mib: int = 512, label: str = "kdump", uuid: str | None = None
) -> None:
    """An empty ext4 filesystem image with a label (and a chosen UUID), as the dump target."""
    with open(path, "wb") as handle:
        handle.truncate(size_mib * 2**20)
    command = ["mkfs.ext4", "-q", "-F", "-L", label, str(path)]
    if uuid is not None:
        command[3:3] = ["-U", uuid]
    subprocess.run(command, check=True)


def run_qemu(
    kernel: Path,
    initrd: Path,
    append: str,
    disk: Path | None,
    *,
    memory: str = "1G",
    cpus: int = 1,
    timeout: float = 600,
    log: Path,
    share_host_root: bool = False,
    stop_after: tuple[str, float] | None = None,
    stop: qemu.StopCondition | None = None,
    extra: tuple[str, ...] = (),
    arch: Arch = Arch.X86_64,
    monitor: Path | None = None,
) -> Boot:
    """Boot under TCG with the console on a file; return when the guest powers off.

    With `stop_after` = (text, seconds), QEMU is also stopped that many
    seconds after `text` first shows on the console (returncode None): for
    runs that are expected to hang. `stop` is any other stop condition (not
    both), e.g. a purgatory halting, seen through QMP or the monitor.
    """
    command = qemu_command(kernel, initrd, append, memory=memory, cpus=cpus, log=log, arch=arch,
                           monitor=monitor)  # fmt: skip
    if disk is not None:
        command += ["-drive", f"file={disk},format=raw,if=virtio"]
    if share_host_root:
        command += [
            "-virtfs",
            f"local,path=/,mount_tag={HOSTROOT_TAG},security_model=none,readonly=on,multidevs=remap",
        ]
    command += extra
    if stop_after is not None:
        stop = qemu.stop_after(*stop_after)
    return qemu.watch(command, log, timeout=timeout, stop=stop)


@dataclass(frozen=True)
class LocalCrash:
    """A crash cycle onto an ext4 dump disk: the boot, and every file on the disk after it."""

    boot: Boot
    files: list[Path]


def capture_console(console: str) -> str:
    """The console from the capture kernel's banner on ('' before it boots)."""
    banners = [match.start() for match in re.finditer(r"Linux version ", console)]
    return console[banners[1] :] if len(banners) > 1 else ""


def capture_panicked(console: str, idle: float) -> str | None:
    """A stop condition: the capture kernel panicked (it never recovers from one)."""
    if "Kernel panic" in capture_console(console):
        time.sleep(2)  # let the panic's reason reach the log
        return "capture kernel panic"
    return None


def crash_to_local_disk(
    capture: Path,
    crashkernel: str,
    work: Path,
    *,
    memory: str = "1G",
    main_kernel: Path | None = None,
) -> LocalCrash:
    """Boot with `crashkernel=`, `kexec -p` the build in `capture`, crash, read the disk back.

    The guest boots `main_kernel` (default: the capture kernel itself, as when
    the recipe reuses the main kernel); a capture kernel panic ends the run.
    """
    main_initrd = work / "main-initrd.img"
    main_initrd.write_bytes(build_main_initrd(capture))
    disk = work / "dump.img"
    make_dump_disk(disk)
    command = qemu_command(
        main_kernel or capture / "vmlinuz",
        main_initrd,
        f"console=ttyS0 crashkernel={crashkernel}",
        memory=memory,
        cpus=1,
        log=work / "console.log",
    )
    command += ["-drive", f"file={disk},format=raw,if=virtio"]
    boot = qemu.watch(command, work / "console.log", timeout=600, stop=capture_panicked)
    return LocalCrash(boot, extract_disk(disk, work / "disk"))


def extract_disk(disk: Path, destination: Path) -> list[Path]:
    """Copy the whole dump filesystem out with debugfs (no mount needed)."""
    destination.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debugfs", "-R", f"rdump / {destination}", str(disk)], check=True, capture_output=True
    )
    return sorted(path for path in destination.rglob("*") if path.is_file())


def dump_dmesg(vmcore: Path, output: Path) -> str:
    """The crashed kernel's log, read from the vmcore by Debian 14's makedumpfile 1.7.8
    (the newest Debian has: it reads lzo and zstd dumps, where this Debian 12 host's
    1.7.2 has no zstd and fails on the Debian 13 and 14 captures' dumps)."""
    reader = dump_reader()
    subprocess.run([*reader.command(), "--dump-dmesg", str(vmcore), str(output)],
                   check=True, capture_output=True)  # fmt: skip
    return output.read_text(errors="replace")


@functools.cache
def dump_reader() -> MakedumpfileRoot:
    """Debian 14's makedumpfile with its libraries, fetched and laid out once per process."""
    return prepare_root("forky")
