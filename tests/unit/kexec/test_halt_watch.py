"""The purgatory-halt watch (tests/support/qmp.py) on synthetic QMP answers.

The VM tests of three architectures rely on it; here each rule it enforces is
shown to bite: a streak of samples in the loop (one outside starts it again),
spread over time, the guest's bytes at the loop and at the PC equal to what
objdump reads from the shipped object, and QEMU `running`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.arch import Arch
from builder.kexec.purgatory.record import purgatory_records
from tests.support import qmp
from tests.support.qmp import HaltSample, PurgatoryHaltWatch, check_parked, halt_loop

# Where the purgatory is loaded in these samples (a line of `load --verbose`).
LOAD = 0x7F000000
CONSOLE = f"purgatory    {LOAD:#014x}  0x2000  0x808  d5c5\nsysrq: Trigger a crash\n"
ARCHES = (Arch.X86_64, Arch.AARCH64, Arch.RISCV64)
REGISTERS = {Arch.X86_64: "RIP={pc:016x} ", Arch.AARCH64: "PC={pc:016x} ",
             Arch.RISCV64: " pc       {pc:016x}\n"}  # fmt: skip


class FakeQmp(qmp.Qmp):
    """QEMU's answers, scripted: one program counter per sample, guest memory, status."""

    def __init__(self, pcs: list[int], memory: dict[int, int], arch: Arch, status: str) -> None:
        self.pcs, self.memory, self.arch, self._status = pcs, memory, arch, status

    def human(self, line: str) -> str:
        assert line == "info registers -a"
        return "CPU#0\n" + REGISTERS[self.arch].format(pc=self.pcs.pop(0))

    def status(self) -> str:
        return self._status

    def physical(self, address: int, count: int) -> bytes:
        return bytes(self.memory.get(address + offset, 0) for offset in range(count))

    def close(self) -> None:
        pass


def _loop(arch: Arch) -> range:
    halt, _ = purgatory_records()[arch].load(LOAD).symbol("purgatory_halt")
    expected = halt_loop(arch)
    return range(halt + expected.offset, halt + expected.offset + len(expected.code))


def _watch(
    arch: Arch, pcs: list[int], *, status: str = "running", code: bytes = b""
) -> PurgatoryHaltWatch:
    loop = _loop(arch)
    memory = dict(zip(loop, code or halt_loop(arch).code, strict=True))
    watch = PurgatoryHaltWatch(arch, Path("unused"), after="sysrq: Trigger a crash", spacing=0)
    watch._qmp = FakeQmp(pcs, memory, arch, status)
    return watch


def _run(watch: PurgatoryHaltWatch, samples: int) -> str | None:
    verdict = None
    for _ in range(samples):
        verdict = watch(CONSOLE, 0.0)
        if verdict:
            break
    return verdict


def test_objdump_reads_each_halt_loop() -> None:
    """The loops: hlt; jmp (after cli), wfe; b (after msr daifset), wfi; j (after the csrs)."""
    assert halt_loop(Arch.X86_64).code == bytes.fromhex("f4ebfd")
    assert halt_loop(Arch.AARCH64).code == bytes.fromhex("5f2003d5ffffff17")
    assert halt_loop(Arch.RISCV64).code == bytes.fromhex("73005010f5bf")


@pytest.mark.parametrize("arch", ARCHES)
def test_three_samples_in_a_row_inside_the_loop_pass(arch: Arch) -> None:
    loop = _loop(arch)
    watch = _watch(arch, [loop.start - 8, loop.start, loop.stop - 2, loop.start])
    assert _run(watch, 4) == "a CPU stays in purgatory_halt (3 samples)"
    assert [sample.parked for sample in check_parked(watch)] == [
        loop.start,
        loop.stop - 2,
        loop.start,
    ]


def test_a_sample_outside_the_loop_starts_the_streak_again() -> None:
    loop = _loop(Arch.AARCH64)
    watch = _watch(Arch.AARCH64, [loop.start, loop.start, loop.start - 4, loop.start, loop.start])
    assert _run(watch, 5) is None
    with pytest.raises(AssertionError, match="2 samples in the loop"):
        check_parked(watch)


def test_other_bytes_at_the_loop_fail() -> None:
    loop = _loop(Arch.RISCV64)
    other = bytes.fromhex("730050106f00")  # wfi; then `j .+0`... not the shipped encoding
    watch = _watch(Arch.RISCV64, [loop.start] * 3, code=other)
    assert _run(watch, 3) == "a CPU stays in purgatory_halt (3 samples)"
    with pytest.raises(AssertionError, match="73005010f5bf"):
        check_parked(watch)


def test_a_paused_qemu_fails() -> None:
    loop = _loop(Arch.X86_64)
    watch = _watch(Arch.X86_64, [loop.start] * 3, status="paused")
    _run(watch, 3)
    with pytest.raises(AssertionError, match="paused"):
        check_parked(watch)


def test_samples_not_spread_over_time_fail() -> None:
    loop = _loop(Arch.X86_64)
    watch = _watch(Arch.X86_64, [loop.start] * 3)
    _run(watch, 3)
    watch.spacing = 1.0  # the samples above were taken back to back
    with pytest.raises(AssertionError):
        check_parked(watch)


def test_a_sample_records_what_it_read() -> None:
    loop = _loop(Arch.X86_64)
    watch = _watch(Arch.X86_64, [loop.start + 1] * 3)
    _run(watch, 3)
    sample: HaltSample = watch.streak[0]
    assert (sample.pcs, sample.status, sample.at_pc) == ((loop.start + 1,), "running", b"\xeb\xfd")
