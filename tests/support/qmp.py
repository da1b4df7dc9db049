"""QEMU's machine protocol (QMP) over a unix socket: registers and memory of a running guest.

Start QEMU with `qmp_option(path)`; `Qmp(path)` connects, negotiates, and
runs commands, and `human()` runs a monitor (HMP) command such as
`info registers -a` through it. `PurgatoryHaltWatch` is a stop condition for
tests/support/qemu.watch: it samples every CPU's RIP after a crash and ends
the run once one CPU sits in the purgatory's halt loop, keeping what it saw.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.kexec.purgatory.x86_64 import load_x86_64_purgatory

RIP = re.compile(r"\bRIP=([0-9a-f]{16})\b")
# A line of `load --verbose` (builder.kexec.layout.core.describe_layout).
PURGATORY_LINE = re.compile(r"^purgatory\s+0x([0-9a-f]+)\s", re.MULTILINE)
# cli; hlt; jmp back to the hlt (entry-x86_64.S, purgatory_halt): FA F4 EB FD.
HALT_LOOP = bytes.fromhex("faf4ebfd")


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
        return str(self.command("human-monitor-command", **{"command-line": line}))

    def rips(self) -> list[int]:
        """Every CPU's instruction pointer."""
        return [int(value, 16) for value in RIP.findall(self.human("info registers -a"))]

    def physical(self, address: int, count: int) -> bytes:
        """`count` bytes of guest physical memory (HMP `xp`)."""
        text = self.human(f"xp /{count}xb {address:#x}")
        return bytes(int(word, 16) for word in re.findall(r"\b0x([0-9a-f]{2})\b", text))

    def close(self) -> None:
        self._socket.close()


def purgatory_halt_range(load_address: int) -> range:
    """Where `purgatory_halt` is once the purgatory is loaded at `load_address`."""
    address, size = load_x86_64_purgatory(load_address).symbol("purgatory_halt")
    return range(address, address + size)


@dataclass
class PurgatoryHaltWatch:
    """Stop condition: a CPU's RIP in purgatory_halt for `samples` samples in a row.

    Reads the purgatory's load address from the guest's `load --verbose` output,
    starts sampling once `after` shows on the console, gives up `grace`
    seconds later. `evidence` keeps what the last sample saw.
    """

    socket_path: Path
    after: str = "sysrq: Trigger a crash"
    grace: float = 150
    samples: int = 3
    evidence: dict[str, object] = field(default_factory=dict)
    _qmp: Qmp | None = None
    _since: float | None = None
    _hits: int = 0

    def __call__(self, console: str, idle: float) -> str | None:
        if self.after not in console:
            return None
        self._since = self._since or time.monotonic()
        found = PURGATORY_LINE.search(console)
        if found is None:
            return "the guest printed no layout (load --verbose)"
        halt = purgatory_halt_range(int(found.group(1), 16))
        self._qmp = self._qmp or Qmp(self.socket_path)
        rips = self._qmp.rips()
        status = self._qmp.command("query-status")
        self.evidence.update(halt=halt, rips=rips, status=status)
        self._hits = self._hits + 1 if any(rip in halt for rip in rips) else 0
        if self._hits >= self.samples:
            self.evidence["code"] = self._qmp.physical(halt.start, len(HALT_LOOP))
            self.evidence["seconds_after_crash"] = round(time.monotonic() - self._since, 1)
            self._qmp.close()
            return "a CPU stays in purgatory_halt"
        if time.monotonic() - self._since > self.grace:
            return f"no CPU in purgatory_halt {self.grace:.0f} s after {self.after!r}"
        return None
