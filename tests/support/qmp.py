"""QEMU's machine protocol (QMP) over a unix socket: registers and memory of a running guest.

Start QEMU with `qmp_option(path)`; `Qmp(path)` connects, negotiates, and
runs commands, and `human()` runs a monitor (HMP) command such as
`info registers -a` through it. `PurgatoryHaltWatch` is a stop condition for
tests/support/qemu.watch, one for every architecture with a purgatory: after
the crash it samples, at least a second apart, every CPU's program counter,
the guest memory of the purgatory's halt loop and QEMU's status, and ends the
run once `samples` samples in a row found a CPU inside the loop. The loop's
address and encoding come from the shipped object as binutils' objdump reads
it (`halt_loop`), not from our own ELF reader.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from builder.arch import ARCHES, Arch
from builder.kexec.purgatory.record import purgatory_records

# Each CPU's program counter in `info registers -a`.
PROGRAM_COUNTER = {
    Arch.X86_64: re.compile(r"\bRIP=([0-9a-f]{16})\b"),
    Arch.AARCH64: re.compile(r"\bPC=([0-9a-f]{16})\b"),
    Arch.RISCV64: re.compile(r"^ pc\s+([0-9a-f]{16})$", re.MULTILINE),
}
# A line of `load --verbose` (builder.kexec.layout.core.describe_layout).
PURGATORY_LINE = re.compile(r"^purgatory\s+0x([0-9a-f]+)\s", re.MULTILINE)
HALT = "purgatory_halt"


def qmp_option(path: Path) -> tuple[str, ...]:
    """QEMU's arguments for a QMP server on the unix socket `path`."""
    return ("-qmp", f"unix:{path},server=on,wait=off")


class Qmp:
    """One QMP session."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout)
        self._socket.connect(str(path))
        self._buffer = b""
        self._read()  # the greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        while b"\n" not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("QEMU closed the QMP socket")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, object] = json.loads(line)
        return message

    def command(self, name: str, **arguments: object) -> object:
        request = {"execute": name, **({"arguments": arguments} if arguments else {})}
        self._socket.sendall(json.dumps(request).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error']}")
            return reply.get("return")

    def human(self, line: str) -> str:
        """A monitor command's output, its lines ending in "\\n" (QEMU sends "\\r\\n")."""
        return str(self.command("human-monitor-command", **{"command-line": line})).replace(
            "\r", ""
        )

    def status(self) -> str:
        """QEMU's run state as `query-status` reports it ("running", "paused", ...)."""
        reply = self.command("query-status")
        assert isinstance(reply, dict), reply
        return str(reply["status"])

    def physical(self, address: int, count: int) -> bytes:
        """`count` bytes of guest physical memory (HMP `xp`)."""
        text = self.human(f"xp /{count}xb {address:#x}")
        return bytes(int(word, 16) for word in re.findall(r"\b0x([0-9a-f]{2})\b", text))

    def close(self) -> None:
        self._socket.close()


@dataclass(frozen=True)
class HaltLoop:
    """The halt loop inside purgatory_halt, as objdump reads the shipped object."""

    offset: int  # purgatory_halt to the loop's start (the backward branch's target)
    code: bytes  # the loop's bytes, in memory order


# One instruction of `objdump -d`: "  58:\td503205f \twfe", "  ac:\teb fd   \tjmp    ab <...>".
_INSTRUCTION = re.compile(r"^ *([0-9a-f]+):\t((?:[0-9a-f]+ )+) *\t(\S+)[ \t]*(\S*)", re.MULTILINE)


@cache
def halt_loop(arch: Arch) -> HaltLoop:
    """purgatory_halt's loop in `arch`'s shipped purgatory, read with binutils' objdump.

    objdump prints each instruction as little-endian units (bytes on x86_64,
    32- and 16-bit words on aarch64 and riscv64); the loop runs from the last
    instruction's branch target to the end of the symbol (`objdump -t`'s size).
    """
    path = resources.files("builder.kexec.purgatory") / purgatory_records()[arch].object_name
    objdump = f"{ARCHES[arch].multiarch}-objdump"
    symbols = subprocess.run([objdump, "-t", str(path)], check=True, capture_output=True, text=True)
    symbol = rf"^([0-9a-f]+) g\s+F \S+\s+([0-9a-f]+) {HALT}$"
    found = re.search(symbol, symbols.stdout, re.MULTILINE)
    assert found, symbols.stdout
    start, size = int(found.group(1), 16), int(found.group(2), 16)
    listing = subprocess.run([objdump, "-d", f"--disassemble={HALT}", str(path)],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
    instructions = [
        (int(address, 16), b"".join(int(unit, 16).to_bytes(len(unit) // 2, "little")
                                    for unit in units.split()), operand)
        for address, units, _mnemonic, operand in _INSTRUCTION.findall(listing)
        if start <= int(address, 16) < start + size
    ]  # fmt: skip
    assert sum(len(code) for _, code, _ in instructions) == size, listing
    target = int(instructions[-1][2], 16)  # the backward branch: "ab", "58", "4c"
    assert start <= target < instructions[-1][0], listing
    loop = b"".join(code for address, code, _ in instructions if address >= target)
    return HaltLoop(target - start, loop)


@dataclass(frozen=True)
class HaltSample:
    """One look at the guest after the crash."""

    seconds: float  # since the crash line showed on the console
    pcs: tuple[int, ...]  # every CPU's program counter
    loop: range  # where the halt loop is in guest physical memory
    memory: bytes  # the guest's bytes at the loop, read over QMP
    at_pc: bytes  # the guest's bytes from the first CPU in the loop to the loop's end
    status: str  # QEMU's query-status
    registers: str  # `info registers -a`

    @property
    def parked(self) -> int | None:
        """The program counter of the first CPU inside the halt loop."""
        return next((pc for pc in self.pcs if pc in self.loop), None)


@dataclass
class PurgatoryHaltWatch:
    """Stop condition: a CPU inside `arch`'s purgatory halt loop for `samples` samples in a row.

    Reads the purgatory's load address from the guest's `load --verbose` output,
    starts sampling once `after` shows on the console (at most once per
    `spacing` seconds), gives up `grace` seconds later. `streak` keeps the
    samples of the last run in the loop, `last` the latest sample.
    """

    arch: Arch
    socket_path: Path
    after: str
    grace: float = 150
    samples: int = 3
    spacing: float = 1.0
    streak: list[HaltSample] = field(default_factory=list)
    last: HaltSample | None = None
    _qmp: Qmp | None = None
    _since: float | None = None

    def __call__(self, console: str, idle: float) -> str | None:
        if self.after not in console:
            return None
        now = time.monotonic()
        self._since = self._since or now
        if now - self._since > self.grace:
            return f"no CPU in purgatory_halt {self.grace:.0f} s after {self.after!r}"
        if self.last is not None and now - self._since - self.last.seconds < self.spacing:
            return None
        found = PURGATORY_LINE.search(console)
        if found is None:
            return "the guest printed no layout (load --verbose)"
        self._qmp = self._qmp or Qmp(self.socket_path)
        self.last = self._sample(int(found.group(1), 16), now - self._since)
        if self.last.parked is None:
            self.streak.clear()
            return None
        self.streak.append(self.last)
        if len(self.streak) < self.samples:
            return None
        self._qmp.close()
        return f"a CPU stays in purgatory_halt ({self.samples} samples)"

    def _sample(self, purgatory: int, seconds: float) -> HaltSample:
        assert self._qmp is not None
        expected = halt_loop(self.arch)
        halt, _ = purgatory_records()[self.arch].load(purgatory).symbol(HALT)
        loop = range(halt + expected.offset, halt + expected.offset + len(expected.code))
        registers = self._qmp.human("info registers -a")
        pcs = tuple(int(pc, 16) for pc in PROGRAM_COUNTER[self.arch].findall(registers))
        parked = next((pc for pc in pcs if pc in loop), None)
        at_pc = b"" if parked is None else self._qmp.physical(parked, loop.stop - parked)
        return HaltSample(seconds, pcs, loop, self._qmp.physical(loop.start, len(loop)), at_pc,
                          self._qmp.status(), registers)  # fmt: skip


def check_parked(watch: PurgatoryHaltWatch) -> list[HaltSample]:
    """Assert what the watch saw: `samples` samples in a row, spread over time, each with a
    CPU inside the halt loop, the guest's bytes there (and at that PC) the object's, QEMU
    running. Returns the samples."""
    expected = halt_loop(watch.arch)
    streak = watch.streak
    assert len(streak) >= watch.samples, f"{len(streak)} samples in the loop; last: {watch.last}"
    spread = streak[-1].seconds - streak[0].seconds
    assert spread >= (watch.samples - 1) * watch.spacing, [sample.seconds for sample in streak]
    for sample in streak:
        assert sample.parked is not None, sample
        assert sample.memory == expected.code, (sample.memory.hex(), expected.code.hex())
        assert sample.at_pc == expected.code[sample.parked - sample.loop.start :], sample
        assert sample.status == "running", sample.status
    return streak
