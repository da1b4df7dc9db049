"""Our own loader on real parts: `kdump-build load` in the guest, sysrq crash, dump checked.

The main side mounts the host root over 9p and runs the project's Python
from it (the venv and the repository are at the same paths in the guest);
kexec-tools is not involved. The capture side is the default recipe's
kernel and initrd, started through our layout and our purgatory.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.kexec.loader import loader_name
from tests.conftest import run_cli
from tests.support import qemu, qmp
from tests.support.paths import DEFAULT_RECIPE, REPO
from tests.vm import harness

pytestmark = pytest.mark.vm


@dataclass(frozen=True)
class Crash:
    console: str
    vmcores: list[Path]
    tmp: Path
    stopped: str  # why the test stopped QEMU ("" when the guest powered off)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    outdir = tmp_path_factory.mktemp("capture") / "out"
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(outdir), "--json")
    assert result.returncode == 0, result.stderr
    return outdir, json.loads(result.stdout)["kernel"]


def _load_and_crash(
    capture: tuple[Path, str],
    tmp: Path,
    load_args: str,
    *,
    stop: qemu.StopCondition | None = None,
    extra: tuple[str, ...] = (),
    status: bool = True,
    cpus: int = 2,
    before: str = "",
) -> Crash:
    outdir, kernel_version = capture
    python = shlex.quote(sys.executable)
    status_command = f'in_host "{python} -m builder.cli status"' if status else ""
    body = f"""
# /run must be writable for the loader's state file; the host root is read-only.
mount -t tmpfs tmpfs /host/run
{before}
if in_host "{python} -m builder.cli load {shlex.quote(str(outdir))} {load_args}"; then
    echo "main: load finished"
else
    echo "main: load failed"
    poweroff -f
fi
echo "main: kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
{status_command}
# Two CPUs: the serial interrupt may belong to the other CPU, and what the tty has not
# sent when this one panics is lost. A second lets it drain the lines asserted on.
sleep 1
echo c > /proc/sysrq-trigger
echo "main: still alive after sysrq crash"
"""
    main_initrd = tmp / "main-initrd.img"
    main_initrd.write_bytes(harness.build_hostroot_initrd(kernel_version, body, REPO, kexec=False))
    disk = tmp / "dump.img"
    harness.make_dump_disk(disk)
    boot = harness.run_qemu(
        outdir / "vmlinuz",
        main_initrd,
        "console=ttyS0 crashkernel=192M",
        disk,
        memory="1G",
        cpus=cpus,
        log=tmp / "console.log",
        share_host_root=True,
        timeout=900,
        stop=stop,
        extra=extra,
    )
    if stop is None:
        assert boot.returncode == 0, f"QEMU did not power off cleanly:\n{boot.console[-4000:]}"
    files = harness.extract_disk(disk, tmp / "disk")
    return Crash(boot.console, [path for path in files if path.name == "vmcore"], tmp, boot.stopped)


def _check_dump(crash: Crash, kernel_version: str) -> None:
    context = crash.console[-5000:]
    assert "main: load finished" in crash.console, context
    assert "main: kexec_crash_loaded=1" in crash.console, context
    assert "sysrq: Trigger a crash" in crash.console, context
    assert "kdump: dump saved to" in crash.console, context
    assert len(crash.vmcores) == 1, crash.vmcores
    log = harness.dump_dmesg(crash.vmcores[0], crash.tmp / "dmesg.txt")
    assert "sysrq triggered crash" in log
    assert f"Linux version {kernel_version}" in log


def test_load_segments_with_our_purgatory(capture: tuple[Path, str], tmp_path: Path) -> None:
    crash = _load_and_crash(capture, tmp_path, "--method segments --verbose")
    assert "loaded 6 segments with kexec_load" in crash.console, crash.console[-5000:]
    assert "method: segments" in crash.console
    _check_dump(crash, capture[1])


def _static_loader_round_trip(outdir: Path) -> str:
    """Shell lines: the static C loader (builder/kexec/loader/, no Python on its path)
    loads the capture with kexec_load, reports it, unloads it."""
    loader = shlex.quote(str(REPO / "builder/kexec/loader" / loader_name(Arch.X86_64)))
    return f"""
in_host "{loader} --verbose {shlex.quote(str(outdir))}" && echo "static: load finished"
echo "static: crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
in_host "{loader} --status"
in_host "{loader} --unload" && echo "static: unloaded"
echo "static: after unload crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
"""


def test_load_file_method(capture: tuple[Path, str], tmp_path: Path) -> None:
    # The same boot first shows kdump-load's kexec_load accepted by the kernel, --status
    # and --unload (no boot of its own: the CI VM budget). Its segments are byte for byte
    # the Python layout's (tests/unit/kexec/test_kdump_load.py), which
    # test_load_segments_with_our_purgatory boots into a capture.
    before = _static_loader_round_trip(capture[0])
    crash = _load_and_crash(capture, tmp_path, "--method file", before=before)
    static = crash.console.split("main: load", 1)[0]
    assert "loaded 6 segments with kexec_load" in static, static[-5000:]
    assert re.search(r"^purgatory\s+0x[0-9a-f]+\s", static, re.MULTILINE), static[-5000:]
    for line in ("static: load finished", "static: crash_loaded=1", "crash kernel loaded",
                 "static: unloaded", "static: after unload crash_loaded=0"):  # fmt: skip
        assert re.search(rf"^{line}\r?$", static, re.MULTILINE), (line, static[-5000:])
    assert "with kexec_file_load" in crash.console, crash.console[-5000:]
    assert "method: file" in crash.console
    _check_dump(crash, capture[1])


# How long the purgatory may take to reach its verdict after the crash; it hashes
# ~70 MiB, a few seconds under TCG.
CAPTURE_GRACE_SECONDS = 150


@pytest.mark.parametrize(
    "segment", ["kernel", "initrd", "boot_params", "cmdline", "elfcorehdr", "backup"]
)
def test_corrupted_segment_leaves_the_cpu_in_purgatory_halt(
    capture: tuple[Path, str], tmp_path: Path, segment: str
) -> None:
    """One byte of `segment` changed after the digest: the CPU ends in the halt loop.

    Shown by the program counter QEMU reports over QMP (every CPU's RIP, three
    samples a second apart), the guest's bytes there being the loop's (hlt; jmp,
    as objdump reads the shipped object),
    QEMU still running, and no dump on the disk. A triple fault (QEMU exits), a
    hang elsewhere or a slow capture kernel all fail this test.
    """
    socket_path = tmp_path / "qmp.sock"
    watch = qmp.PurgatoryHaltWatch(
        Arch.X86_64, socket_path, after="sysrq: Trigger a crash", grace=CAPTURE_GRACE_SECONDS
    )
    backup = " --backup" if segment == "backup" else ""
    crash = _load_and_crash(
        capture,
        tmp_path,
        f"--method segments --verbose{backup} --testing-corrupt-segment {segment}",
        stop=watch,
        extra=qmp.qmp_option(socket_path),
        status=False,
        cpus=1,
    )
    context = crash.console[-5000:]
    assert f"TESTING: corrupted segment {segment!r}" in crash.console, context
    assert "main: kexec_crash_loaded=1" in crash.console, context
    assert crash.stopped == "a CPU stays in purgatory_halt (3 samples)", (watch.last, context)
    qmp.check_parked(watch)
    after_crash = crash.console.split("sysrq: Trigger a crash", 1)[1]
    # The capture kernel never started: no second banner, nothing dumped.
    assert "Linux version" not in after_crash and "kdump:" not in after_crash, context
    assert crash.vmcores == []


def test_load_segments_with_backup_region(capture: tuple[Path, str], tmp_path: Path) -> None:
    # Off by default (v5.5+ kernels keep the low 1 MiB reserved); forced here, the
    # purgatory copies the first 640 KiB into the crash region and the ELF core
    # header reads that range from the copy.
    crash = _load_and_crash(capture, tmp_path, "--method segments --backup --verbose")
    assert "loaded 7 segments with kexec_load" in crash.console, crash.console[-5000:]
    assert "backup " in crash.console
    _check_dump(crash, capture[1])
