"""The x86_64 calibration's crash cycle: build a capture for a guest, boot it, judge the dump.

The default recipe's real crash cycle (tests/vm/harness.py: main kernel,
`kexec -p`, sysrq crash, our capture initrd saving the vmcore to an ext4 disk
or over NFS to nfs-ganesha on the host) with one `crashkernel=` size. A trial
passes when the vmcore is saved and `makedumpfile --dump-dmesg` on the host
(Debian 14's 1.7.8, `dump_reader` in tests/vm/harness.py: it reads zstd dumps
too) reads the crashed kernel's log from it; a failing one says why, the memory
reason first (tests/support/capture_memory.py). Each boot keeps its evidence
(bench/calibration_evidence.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from bench.calibration_evidence import boot_evidence
from bench.calibration_search import Capture, Config, Trial
from builder.crashkernel.profile import capture_profile
from builder.image.kernel import find_kernel
from builder.image.outputs import write_outputs
from builder.image.pipeline import Steps, open_root, plan_build
from builder.recipe.model import KernelMode, Recipe
from builder.recipe.parse import parse_recipe
from tests.support import qemu, recipes
from tests.support.capture_memory import capture_part, memory_reason
from tests.support.paths import DEFAULT_RECIPE
from tests.vm import harness

# The main kernel's line saying what it reserved: 6.1 ("Reserving 96MB of memory at
# 928MB for crashkernel"), and since v6.7 kernel/crash_reserve.c's ("crashkernel
# reserved: 0x... - 0x... (96 MB)").
RESERVED_LINE = (
    r"Reserving \d+MB of memory at \d+MB for crashkernel[^\n]*|crashkernel reserved: [^\n]*"
)
# Under TCG on a loaded host the capture kernel's IO-APIC timer check can miss its
# ticks and panic ("IO-APIC + timer doesn't work!", seen with 6.12); skipping the
# check (arch/x86/kernel/apic/io_apic.c timer_irq_works) changes no memory use.
TCG_CMDLINE = ("no_timer_check",)
# Fixed, so the capture initrd (which names the port) and the trial log stay valid.
NFS_PORT = 20490
HOST_FROM_GUEST = "10.0.2.2"  # QEMU user networking's view of the host's 127.0.0.1


def main_kernel_image(recipe: Recipe, work: Path) -> Path:
    """The recipe's main kernel (kernel.image) written to `work`, for a dedicated capture."""
    root, _ = open_root(recipe, Steps())
    _, data, _ = find_kernel(recipe, root, "kernel.image", recipe.kernel.image)
    path = work / f"main-vmlinuz-{recipe.path.stem}"
    path.write_bytes(data)
    return path


def build_capture(work: Path, config: Config, base: Path = DEFAULT_RECIPE) -> Capture:
    """Build the recipe `base` (nr_cpus=, zstd level and dump target replaced) and the
    main initrd."""
    default = tomllib.loads(base.read_text())
    cmdline = [f"nr_cpus={config.capture_cpus}" if word.startswith("nr_cpus=") else word
               for word in default["kernel"]["cmdline"]]  # fmt: skip
    append = [*default["kernel"].get("cmdline_append", []), *TCG_CMDLINE]
    changes: dict[str, dict[str, object]] = {
        "kernel": {"cmdline": cmdline, "cmdline_append": list(dict.fromkeys(append))},
        "initrd": {"compression_level": config.zstd_level},
    }
    replace: dict[str, dict[str, object]] = {}
    if config.target == "nfs":
        replace["dump"] = {
            "target": "nfs", "nfs": f"{HOST_FROM_GUEST}:/kdump", "nfs_version": config.nfs_version,
            "nfs_options": [f"port={NFS_PORT}"], "path": "/dumps", "network": "dhcp",
            "final_action": "poweroff", "failure_action": "poweroff",
        }  # fmt: skip
        changes["initrd"]["modules"] = ["virtio_net", *default["initrd"]["modules"]]
    text = recipes.recipe_text(changes, replace=replace, base=base)
    recipe = parse_recipe(text, base)
    directory = work / f"capture-{base.stem}-{config.variant}"
    result = plan_build(recipe)
    write_outputs(result, directory)
    main_initrd = work / f"main-initrd-{base.stem}-{config.variant}.img"
    main_initrd.write_bytes(harness.build_main_initrd(directory))
    main_kernel = directory / "vmlinuz"
    if recipe.kernel.mode is KernelMode.DEDICATED:
        main_kernel = main_kernel_image(recipe, work)
    digest = hashlib.sha256()
    for name in ("vmlinuz", "initrd.img", "cmdline.txt"):
        digest.update((directory / name).read_bytes())
    digest.update(main_initrd.read_bytes())
    digest.update(main_kernel.read_bytes())
    profile = capture_profile(recipe, result.kernel, result.cmdline, result.members, result.initrd)
    return Capture(
        directory, main_initrd, digest.hexdigest(), profile, result.kernel_version, main_kernel
    )


def _line(console: str, pattern: str) -> str:
    match = re.search(pattern, console)
    return match.group(0).strip() if match else ""


def boot(
    capture: Capture, config: Config, size_mib: int, work: Path, timeout: float, idle: float
) -> Trial:
    """One crash cycle with crashkernel=<size_mib>M; ok when the vmcore validates."""
    with tempfile.TemporaryDirectory(dir=work, prefix="trial.") as scratch_name:
        scratch = Path(scratch_name)
        disk = scratch / "dump.img"
        if config.target == "local":
            harness.make_dump_disk(disk)
            media = ["-drive", f"file={disk},format=raw,if=virtio"]
        else:
            media = list(qemu.USER_NETWORK)
            shutil.rmtree(work / "nfs-export" / "dumps", ignore_errors=True)
        log = scratch / "console.log"
        command = [
            *qemu.qemu_command(
                capture.main_kernel,
                capture.main_initrd,
                f"console=ttyS0 crashkernel={size_mib}M",
                memory=f"{config.memory_mib}M",
                cpus=config.vcpus,
                log=log,
            ),
            *media,
        ]

        def failed(console: str, silent: float) -> str | None:
            if "Kernel panic" in capture_part(console):
                time.sleep(2)  # let the panic's reason reach the log
                return "capture kernel panic"
            return f"no console output for {idle:.0f} s" if silent > idle else None

        run = qemu.watch(command, log, timeout=timeout, stop=failed)
        console = log.read_text(errors="replace") if log.exists() else ""
        evidence = boot_evidence(capture, command, console, work, scratch)
        ok, outcome = _outcome(config, run, console, disk, scratch, work)
        return Trial(config.name, size_mib, ok, outcome, round(run.seconds, 1),
                     _line(console, RESERVED_LINE),
                     _line(capture_part(console), r"Memory: \d+K/\d+K available[^\n]*"),
                     evidence)  # fmt: skip


def _outcome(
    config: Config, run: qemu.Boot, console: str, disk: Path, scratch: Path, work: Path
) -> tuple[bool, str]:
    """Whether the trial dumped and validated, and what happened in a few words."""
    outcome = run.stopped
    panic = re.search(r"Kernel panic - not syncing: ([^\n]*)", capture_part(console))
    if outcome == "capture kernel panic" and panic:
        outcome += f": {panic.group(1).strip()}"
    if "main: kexec -p failed" in console:
        return False, "kexec -p refused the load"
    if not _line(console, RESERVED_LINE) and not outcome:
        return False, "nothing reserved"
    if "kdump: dump saved to" not in console or outcome:
        return False, _failure(console, outcome, run.returncode)
    if config.target == "local":
        files = harness.extract_disk(disk, scratch / "disk")
    else:
        files = sorted((work / "nfs-export").rglob("*"))
    return _validate(files, scratch)


def _failure(console: str, stopped: str, returncode: int | None) -> str:
    """Why a trial failed, the memory reason first, then what the capture said."""
    reason = memory_reason(console)
    if reason:
        return f"out of memory: {reason}" + (f" ({stopped})" if stopped else "")
    failed = _line(capture_part(console), r"kdump: FAILED[^\n]*")
    if failed:
        return failed + (f" ({stopped})" if stopped else "")
    return stopped or f"no dump saved (qemu exit {returncode})"


def _validate(files: list[Path], scratch: Path) -> tuple[bool, str]:
    vmcores = [path for path in files if path.name == "vmcore"]
    if len(vmcores) != 1:
        return False, f"expected one vmcore on the dump target, found {len(vmcores)}"
    try:
        log = harness.dump_dmesg(vmcores[0], scratch / "dmesg.txt")
    except subprocess.CalledProcessError as error:
        return False, f"makedumpfile --dump-dmesg failed ({error.returncode})"
    if "sysrq triggered crash" not in log:
        return False, "vmcore log lacks 'sysrq triggered crash'"
    return True, f"dump saved and valid ({vmcores[0].stat().st_size} bytes)"


@contextlib.contextmanager
def nfs_server(work: Path) -> Iterator[int]:
    """nfs-ganesha (NFSv4 over TCP, VFS backend) on 127.0.0.1:NFS_PORT exporting work/nfs-export."""
    export = work / "nfs-export"
    recovery = work / "nfs-recovery"
    for directory in (export, recovery):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", NFS_PORT))
        except OSError:
            raise SystemExit(
                f"127.0.0.1:{NFS_PORT} is taken; the nfs capture names this port"
            ) from None
    config = work / "ganesha.conf"
    config.write_text(
        "NFS_CORE_PARAM { Bind_addr = 127.0.0.1; "
        f"NFS_Port = {NFS_PORT}; Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; "
        "Enable_UDP = false; }\n"
        f'NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = "{recovery}"; }}\n'
        f'EXPORT {{ Export_Id = 1; Path = "{export}"; Pseudo = /kdump; Access_Type = RW; '
        "Squash = No_Root_Squash; SecType = sys; Protocols = 4; Transports = TCP; "
        "FSAL { Name = VFS; } }\n"
    )
    log = work / "ganesha.log"
    process = subprocess.Popen(
        ["ganesha.nfsd", "-F", "-L", str(log), "-f", str(config), "-p", str(work / "ganesha.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"ganesha.nfsd exited: see {log}")
            try:
                socket.create_connection(("127.0.0.1", NFS_PORT), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"ganesha.nfsd does not listen on {NFS_PORT}") from None
                time.sleep(0.2)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
