"""riscv64 end to end on real parts: our loader in a QEMU virt guest, sysrq crash, dump checked.

The guest is Debian 13's riscv64 kernel (6.12: no kexec_file_load, and
Debian 13 has no kexec-tools for riscv64 at all) under qemu-system-riscv64
-M virt (TCG, OpenSBI). It runs our own `kdump-build load` on Debian 13's
python3.13 and its own python3-typer, -zstandard, -libarchive-c and -lz4
(tests/support/guestroot.py), so the capture kernel starts through our
purgatory, our device tree and our ELF core header; our initrd saves the
dump; the host reads it with Debian 13's riscv64 makedumpfile under
qemu-riscv64. One boot serves the positive tests; the negative one corrupts
a segment and reads the parked hart's program counter through QEMU's monitor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.kexec.purgatory.riscv64 import PURGATORY
from tests.conftest import run_cli
from tests.support.paths import REPO
from tests.vm import loader_guest
from tests.vm.loader_guest import LOAD_AND_CRASH, GuestCrash

pytestmark = pytest.mark.vm

RECIPE = REPO / "recipes" / "qemu-riscv64.toml"
APPEND = "crashkernel=256M"
CRASH_REGION_KIB = 256 * 1024
FAREWELL = "Bye..."  # arch/riscv/kernel/machine_kexec.c, the crashed kernel's last line
SIE = 1 << 1  # sstatus/mstatus.SIE: supervisor interrupts enabled


@pytest.fixture(scope="module")
def riscv64_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """recipes/qemu-riscv64.toml built on this (amd64) host from Debian 13's packages."""
    outdir = tmp_path_factory.mktemp("riscv64") / "out"
    result = run_cli(str(RECIPE), "-o", str(outdir), "--json")
    assert result.returncode == 0, result.stderr
    return outdir, json.loads(result.stdout)["kernel"]


@pytest.fixture(scope="module")
def crash(riscv64_build: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> GuestCrash:
    outdir, kernel = riscv64_build
    work = tmp_path_factory.mktemp("riscv64-crash")
    return loader_guest.crash_cycle(Arch.RISCV64, outdir, kernel, LOAD_AND_CRASH, work,
                                    append=APPEND, timeout=600)  # fmt: skip


def test_auto_takes_our_segments_and_says_why(crash: GuestCrash) -> None:
    loader_guest.check_auto_load(crash.boot.console)


def test_file_method_is_refused_where_the_kernel_lacks_it(crash: GuestCrash) -> None:
    loader_guest.check_file_refused(crash.boot.console)


def test_capture_kernel_boots_through_our_purgatory_and_device_tree(
    crash: GuestCrash, riscv64_build: tuple[Path, str]
) -> None:
    outdir, kernel = riscv64_build
    console = crash.boot.console
    # machine_kexec: the kernel enters our purgatory with a1 = our DTB segment.
    entry = PURGATORY.load(loader_guest.shown_segment(console, "purgatory")).entry
    assert f"Will call new kernel at {entry:08x} from hart id 0" in console, console[-3000:]
    assert f"FDT image at {loader_guest.shown_segment(console, 'dtb'):08x}" in console
    loader_guest.check_capture_boot(console, outdir, kernel, FAREWELL, CRASH_REGION_KIB)


def test_dump_is_read_by_riscv64_makedumpfile(
    crash: GuestCrash, riscv64_build: tuple[Path, str]
) -> None:
    loader_guest.check_dump(crash, riscv64_build[1])


def test_corrupted_segment_parks_the_hart_in_purgatory_halt(
    riscv64_build: tuple[Path, str], tmp_path: Path
) -> None:
    outdir, kernel = riscv64_build
    crash, parked = loader_guest.corrupted_crash_cycle(
        Arch.RISCV64, outdir, kernel, tmp_path, append=APPEND, farewell=FAREWELL,
        halt_of=lambda mem: PURGATORY.load(mem).symbol("purgatory_halt"),
        pc_of=lambda registers: loader_guest.riscv_registers(registers)["pc"],
    )  # fmt: skip
    console = crash.boot.console
    assert "TESTING: corrupted segment 'initrd'" in console, console[-5000:]
    assert "main: kexec_crash_loaded=1" in console
    # Stopped by us while QEMU was still running, with the PC inside purgatory_halt.
    assert parked, f"{crash.boot.stopped or 'QEMU exited'}:\n{console[-3000:]}"
    assert crash.boot.returncode is None
    state = loader_guest.riscv_registers(parked.registers)
    halt, size = parked.halt
    print(f"{crash.boot.stopped}; purgatory_halt {halt:#x}+{size:#x}; "
          f"stvec {state['stvec']:#x} mstatus {state['mstatus']:#x}")  # fmt: skip
    assert crash.boot.stopped == f"CPU parked at {parked.pc:#x} in purgatory_halt"
    assert state["stvec"] == halt  # any trap comes back to the halt
    assert not state["mstatus"] & SIE  # interrupts off: wfi only sleeps
    captured = loader_guest.after_crash(console, FAREWELL)
    assert "Linux version" not in captured and "kdump:" not in captured
    assert crash.vmcores == []
