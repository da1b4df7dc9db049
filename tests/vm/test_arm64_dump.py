"""arm64 end to end on real parts: our loader in a QEMU virt guest, sysrq crash, dump checked.

The guest is Debian 12's arm64 kernel (6.1: no kexec_file_load, no `_text`
in kallsyms, KASLR on) under qemu-system-aarch64 -M virt (TCG). It runs our
own `kdump-build load` from an arm64 root (tests/support/guestroot.py), so
the capture kernel starts through our purgatory, our device tree and our
ELF core header; our initrd saves the dump; the host reads it with Debian's
arm64 makedumpfile under qemu-aarch64. One boot serves the positive tests;
the negative one corrupts a segment and reads the parked CPU's program
counter through QEMU's monitor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.kexec.purgatory.aarch64 import PURGATORY
from tests.conftest import run_cli
from tests.support.paths import REPO
from tests.vm import loader_guest
from tests.vm.loader_guest import LOAD_AND_CRASH, GuestCrash

pytestmark = pytest.mark.vm

RECIPE = REPO / "recipes" / "qemu-arm64.toml"
APPEND = "crashkernel=192M"
CRASH_REGION_KIB = 192 * 1024


@pytest.fixture(scope="module")
def arm64_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """recipes/qemu-arm64.toml built on this (amd64) host."""
    outdir = tmp_path_factory.mktemp("arm64") / "out"
    result = run_cli(str(RECIPE), "-o", str(outdir), "--json")
    assert result.returncode == 0, result.stderr
    return outdir, json.loads(result.stdout)["kernel"]


@pytest.fixture(scope="module")
def crash(arm64_build: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> GuestCrash:
    outdir, kernel = arm64_build
    work = tmp_path_factory.mktemp("arm64-crash")
    return loader_guest.crash_cycle(Arch.AARCH64, outdir, kernel, LOAD_AND_CRASH, work,
                                    append=APPEND)  # fmt: skip


def _after_crash(console: str) -> str:
    return loader_guest.after_crash(console, "Bye!")


def test_auto_takes_our_segments_and_says_why(crash: GuestCrash) -> None:
    loader_guest.check_auto_load(crash.boot.console)
    # status after the load: how it was loaded, and why auto chose that.
    assert "method: segments (auto: kernel lockdown is" in crash.boot.console


def test_file_method_is_refused_where_the_kernel_lacks_it(crash: GuestCrash) -> None:
    loader_guest.check_file_refused(crash.boot.console)


def test_capture_kernel_boots_through_our_purgatory_and_device_tree(
    crash: GuestCrash, arm64_build: tuple[Path, str]
) -> None:
    outdir, kernel = arm64_build
    loader_guest.check_capture_boot(crash.boot.console, outdir, kernel, "Bye!", CRASH_REGION_KIB)


def test_dump_is_read_by_arm64_makedumpfile(
    crash: GuestCrash, arm64_build: tuple[Path, str]
) -> None:
    loader_guest.check_dump(crash, arm64_build[1])


def test_corrupted_segment_parks_the_cpu_in_purgatory_halt(
    arm64_build: tuple[Path, str], tmp_path: Path
) -> None:
    outdir, kernel = arm64_build
    crash, parked = loader_guest.corrupted_crash_cycle(
        Arch.AARCH64, outdir, kernel, tmp_path, append=APPEND, farewell="Bye!",
        halt_of=lambda mem: PURGATORY.load(mem).symbol("purgatory_halt"),
        pc_of=lambda registers: loader_guest.program_counter(registers)[0],
    )  # fmt: skip
    console = crash.boot.console
    assert "TESTING: corrupted segment 'initrd'" in console, console[-5000:]
    assert "main: kexec_crash_loaded=1" in console
    # Stopped by us while QEMU was still running, with the PC inside purgatory_halt.
    assert parked, f"{crash.boot.stopped or 'QEMU exited'}:\n{console[-3000:]}"
    assert crash.boot.returncode is None
    registers = parked.registers
    _, level = loader_guest.program_counter(registers)
    print(f"{crash.boot.stopped}; {level}; " + " ".join(re.findall(r"PSTATE=\S+", registers)))
    assert crash.boot.stopped == f"CPU parked at {parked.pc:#x} in purgatory_halt"
    assert level == "EL1h", registers
    pstate = re.search(r"PSTATE=([0-9a-f]+)", registers)
    assert pstate and int(pstate.group(1), 16) & 0x3C0 == 0x3C0, registers  # DAIF masked
    captured = _after_crash(console)
    assert "Linux version" not in captured and "kdump:" not in captured
    assert crash.vmcores == []
