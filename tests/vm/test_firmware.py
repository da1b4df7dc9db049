"""A firmware-like device arms kdump with the firmware output alone: no Python, no kexec-tools.

The main side is what a Buildroot image boots: busybox (its init, applets and
shell) and nothing else from a distribution. The image step is what
docs/firmware.md tells an image to do: copy the build's output directory
(`firmware.loader = true`) to firmware.directory and its `S90kdump-load` to
/etc/init.d. busybox init runs /etc/init.d/rcS, which starts every S-script
in order, as Buildroot's does; S90kdump-load arms the capture with the static
`kdump-load`, a later script crashes the kernel through sysrq. The capture
saves the dump to the ext4 disk labelled kdump; the host reads it with
debugfs and checks it with makedumpfile --dump-dmesg.

The boards: x86_64; Debian 12 arm64, where kexec-tools cannot arm the
capture; Debian 13 riscv64, which has no kexec-tools at all.

The negative boots (x86_64, arm64) load once more after S90kdump-load, with
one segment corrupted after the purgatory's digest was taken
(`--testing-corrupt-segment`, as tests/vm/test_kdump_load.py does with the
Python loader): the CPU must stay in the purgatory's halt loop, sampled over
QMP (tests/support/qmp.py). The x86_64 one also locks the kernel down after
that load and checks that kdump-load then fails in one line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.binfmt.cpio import write_cpio
from builder.compression import Compression, compress
from builder.image.initrd import InitrdPlan
from builder.recipe.settings import FIRMWARE_DIRECTORY
from tests.conftest import run_cli
from tests.support import qemu, qmp
from tests.support.guestroot import guest_root
from tests.support.paths import REPO
from tests.support.qemu import Boot
from tests.support.recipes import recipe_text
from tests.vm import harness, loader_guest

pytestmark = pytest.mark.vm

# busybox init's configuration and the sysinit script of a Buildroot image.
INITTAB = "::sysinit:/etc/init.d/rcS\n"
RC_S = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for script in /etc/init.d/S??*; do
    [ -x "$script" ] && "$script" start
done
"""
# The test's own last script: the crash (or a clean power-off when nothing is armed).
CRASH = """#!/bin/sh
echo "main: kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || poweroff -f
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
echo "main: still alive after sysrq crash"
poweroff -f
"""
# The negative boot: after S90kdump-load, load again with the initrd segment corrupted.
CORRUPT = f"""#!/bin/sh
{FIRMWARE_DIRECTORY}/kdump-load {FIRMWARE_DIRECTORY} --verbose --testing-corrupt-segment initrd
"""
# The x86_64 negative boot, after the corrupted load: lockdown (as secure boot would
# set it) makes the kernel refuse kexec_load; kdump-load must say why in one line.
LOCKDOWN = f"""#!/bin/sh
mount -t securityfs securityfs /sys/kernel/security
echo integrity > /sys/kernel/security/lockdown
echo "main: lockdown $(cat /sys/kernel/security/lockdown)"
{FIRMWARE_DIRECTORY}/kdump-load {FIRMWARE_DIRECTORY} 2> /tmp/lockdown.err
echo "main: kdump-load under lockdown exit $?, $(wc -l < /tmp/lockdown.err) line(s)"
echo "main: stderr<$(cat /tmp/lockdown.err)>"
"""
LOCKDOWN_ERROR = (
    "kdump-load: kexec_load: refused by kernel lockdown (secure boot); only a signed kernel "
    "loaded with kexec_file_load can be used"
)
# After the crash the purgatory hashes the segments under TCG; a good capture kernel
# prints its banner within seconds.
PARK_GRACE_SECONDS = 150


@dataclass(frozen=True)
class Board:
    """A device of one architecture: its bundled recipe and its kernel command line."""

    arch: Arch
    recipe: str
    append: str


X86_64 = Board(Arch.X86_64, "qemu-x86_64", "console=ttyS0 crashkernel=192M")
# Debian 12 arm64: kexec-tools cannot arm the capture there (no `_text` in kallsyms).
ARM64 = Board(Arch.AARCH64, "qemu-arm64", "console=ttyAMA0 crashkernel=192M")
# Debian 13 riscv64 (6.12, no kexec_file_load): Debian 13 has no kexec-tools for riscv64.
RISCV64 = Board(Arch.RISCV64, "qemu-riscv64", "console=ttyS0 crashkernel=256M")


@dataclass(frozen=True)
class Firmware:
    """A board's firmware output, and its capture kernel's version."""

    board: Board
    outdir: Path
    kernel_version: str


def build_firmware(board: Board, work: Path) -> Firmware:
    """The board's recipe with `firmware.loader = true`, built by the command line."""
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    recipe = work / "firmware.toml"
    base = REPO / "recipes" / f"{board.recipe}.toml"
    recipe.write_text(recipe_text({"firmware": {"loader": True}}, base=base))
    outdir = work / "out"
    built = run_cli(str(recipe), "-o", str(outdir), "--json")
    assert built.returncode == 0, built.stderr
    return Firmware(board, outdir, json.loads(built.stdout)["kernel"])


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Firmware:
    return build_firmware(X86_64, tmp_path_factory.mktemp("firmware"))


@pytest.fixture(scope="module")
def arm64_firmware(tmp_path_factory: pytest.TempPathFactory) -> Firmware:
    """Built once for the arm64 positive and negative boots."""
    return build_firmware(ARM64, tmp_path_factory.mktemp("arm64-firmware"))


def image_plan(firmware: Firmware, scripts: dict[str, str]) -> InitrdPlan:
    """The device's root: busybox, then the image step (the output directory as it is,
    its boot script into /etc/init.d), busybox init's files and the test's `scripts`."""
    plan = harness.busybox_plan(firmware.board.arch)
    outdir = firmware.outdir
    for path in sorted(outdir.iterdir()):
        if not path.name.startswith("."):  # kdump-build's own marker stays behind
            plan.file(f"{FIRMWARE_DIRECTORY}/{path.name}", path.read_bytes(),
                      path.stat().st_mode & 0o777)  # fmt: skip
    plan.file("/etc/init.d/S90kdump-load", (outdir / "S90kdump-load").read_bytes(), 0o755)
    plan.file("/etc/inittab", INITTAB.encode())
    plan.file("/etc/init.d/rcS", RC_S.encode(), 0o755)
    for name, text in {"S99crash": CRASH, **scripts}.items():
        plan.file(f"/etc/init.d/{name}", text.encode(), 0o755)
    plan.symlink("/init", "/bin/busybox")
    return plan


def _boot(
    firmware: Firmware,
    work: Path,
    scripts: dict[str, str],
    stop: qemu.StopCondition | None = None,
    extra: tuple[str, ...] = (),
) -> tuple[Boot, list[Path]]:
    initrd = work / "main-initrd.img"
    members = image_plan(firmware, scripts).members()
    paths = [member.path for member in members]  # firmware-like on every board
    assert not [path for path in paths if "python" in path or path.endswith("/kexec")], paths
    initrd.write_bytes(compress(write_cpio(members), Compression.ZSTD, 3))
    disk = work / "dump.img"
    harness.make_dump_disk(disk)
    boot = harness.run_qemu(
        firmware.outdir / "vmlinuz", initrd, firmware.board.append, disk, memory="1G",
        log=work / "console.log", timeout=600, stop=stop, extra=extra, arch=firmware.board.arch,
    )  # fmt: skip
    files = harness.extract_disk(disk, work / "disk")
    return boot, [path for path in files if path.name == "vmcore"]


def _check_armed_and_dumped(boot: Boot, vmcores: list[Path]) -> None:
    context = boot.console[-5000:]
    assert boot.returncode == 0, context
    main_side = boot.console.split("sysrq: Trigger a crash", 1)[0]
    assert "main: kexec_crash_loaded=1" in main_side, context
    assert re.search(r"^loaded \d segments with kexec_load$", main_side, re.MULTILINE), context
    assert "S90kdump-load: the crash capture is not armed" not in main_side, context
    assert "kdump: dump saved to" in boot.console, context
    assert len(vmcores) == 1, vmcores


def _check_dump_read(firmware: Firmware, vmcore: Path, work: Path) -> None:
    """The vmcore read by Debian's makedumpfile of the board's architecture (qemu-user
    for a foreign one) shows the panic and the crashed kernel's version."""
    output = work / "dmesg.txt"
    arch = firmware.board.arch
    if arch is Arch.X86_64:
        log = harness.dump_dmesg(vmcore, output)
    else:
        log = loader_guest.dump_dmesg(guest_root(arch), vmcore, output)
    assert "Kernel panic - not syncing: sysrq triggered crash" in log
    assert f"Linux version {firmware.kernel_version}" in log


def _arm_crash_and_read_the_dump(firmware: Firmware, work: Path) -> None:
    """The positive boot: S90kdump-load arms, S99crash crashes, the capture saves the dump,
    the host's makedumpfile for the board reads it."""
    boot, vmcores = _boot(firmware, work, {})
    _check_armed_and_dumped(boot, vmcores)
    _check_dump_read(firmware, vmcores[0], work)


def _boot_parked(
    firmware: Firmware, work: Path, after: str, scripts: dict[str, str]
) -> tuple[Boot, qmp.PurgatoryHaltWatch]:
    """The negative boot: S95corrupt reloads with the initrd corrupted (plus `scripts`);
    after the crash (`after` on the console) the CPU must park in purgatory_halt."""
    socket_path = work / "qmp.sock"
    watch = qmp.PurgatoryHaltWatch(
        firmware.board.arch, socket_path, after=after, grace=PARK_GRACE_SECONDS
    )
    boot, vmcores = _boot(firmware, work, {"S95corrupt": CORRUPT, **scripts}, stop=watch,
                          extra=qmp.qmp_option(socket_path))  # fmt: skip
    context = boot.console[-5000:]
    assert "TESTING: corrupted segment 'initrd'" in boot.console, context
    assert "main: kexec_crash_loaded=1" in boot.console, context
    assert boot.stopped == "a CPU stays in purgatory_halt (3 samples)", (watch.last, context)
    qmp.check_parked(watch)
    after_crash = boot.console.split(after, 1)[1]
    assert "Linux version" not in after_crash and "kdump:" not in after_crash, context
    assert vmcores == []
    return boot, watch


def test_the_image_holds_no_python_and_no_kexec_tools(firmware: Firmware) -> None:
    paths = [member.path for member in image_plan(firmware, {}).members()]
    assert not [path for path in paths if "python" in path or path.endswith("/kexec")], paths
    assert f"{FIRMWARE_DIRECTORY}/kdump-load" in paths


def test_kdump_load_arms_the_capture_at_boot_and_the_dump_is_saved(
    firmware: Firmware, tmp_path: Path
) -> None:
    _arm_crash_and_read_the_dump(firmware, tmp_path)


def test_a_corrupted_segment_parks_the_cpu_in_purgatory_and_lockdown_is_refused(
    firmware: Firmware, tmp_path: Path
) -> None:
    boot, _ = _boot_parked(firmware, tmp_path, "sysrq: Trigger a crash", {"S96lockdown": LOCKDOWN})
    main_side = boot.console.split("sysrq: Trigger a crash", 1)[0]
    assert "main: lockdown none [integrity] confidentiality" in main_side, boot.console[-5000:]
    assert "main: kdump-load under lockdown exit 1, 1 line(s)" in main_side
    assert f"main: stderr<{LOCKDOWN_ERROR}>" in main_side


def test_on_debian_12_arm64_where_kexec_tools_fails(
    arm64_firmware: Firmware, tmp_path: Path
) -> None:
    """The same image for arm64; its vmcore read by Debian's arm64 makedumpfile (qemu-user)."""
    _arm_crash_and_read_the_dump(arm64_firmware, tmp_path)


def test_a_corrupted_segment_parks_the_arm64_cpu_in_purgatory(
    arm64_firmware: Firmware, tmp_path: Path
) -> None:
    """The arm64 negative: the PC in the halt loop at EL1, sample after sample (as
    tests/vm/test_arm64_dump.py checks it after the Python loader)."""
    _, watch = _boot_parked(arm64_firmware, tmp_path, "sysrq: Trigger a crash", {})
    for sample in qmp.check_parked(watch):
        _, level = loader_guest.program_counter(sample.registers)
        assert level == "EL1h", sample.registers


def test_on_debian_13_riscv64_where_there_is_no_kexec_tools(tmp_path: Path) -> None:
    """The image from Debian 13's riscv64 busybox; the first guest run of the riscv64
    kdump-load. Its vmcore read by Debian 13's riscv64 makedumpfile (qemu-user)."""
    firmware = build_firmware(RISCV64, tmp_path)
    _arm_crash_and_read_the_dump(firmware, tmp_path)
