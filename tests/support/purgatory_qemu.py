"""Run the relocated purgatory on an emulated x86_64 CPU (QEMU TCG), no kernel.

tests/c/purgatory_qemu_stub.S is booted as a multiboot image: it enters long
mode, leaves the CPU as the crashed kernel's relocate_kernel does and jumps
to the purgatory; the purgatory's `rip` is the stub's `fake_kernel`, which
prints the registers it received on the debug console and halts. The test
places the purgatory and the verified blobs in guest RAM with QEMU's generic
loader device, waits over QMP until the CPU halts, and reads back where it
halted and any memory it asks for.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.kexec.purgatory.loader import LoadedPurgatory
from tests.support.paths import C_SOURCES

STUB_SOURCE = C_SOURCES / "purgatory_qemu_stub.S"
GUEST_MEMORY = "128M"
BOOT_TIMEOUT = 60.0  # seconds; a run takes well under one under TCG

# What fake_kernel prints, one hex quad per line, in this order.
REPORTED = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "cs", "ds", "es", "ss", "gdt_limit", "gdt_base", "rflags",
)  # fmt: skip


@dataclass(frozen=True)
class Stub:
    """The built multiboot stub and the addresses of its symbols."""

    image: Path
    symbols: Mapping[str, int]


@dataclass(frozen=True)
class Halted:
    """Where the guest CPU halted, what it printed, and memory read after."""

    rip: int
    console: str
    memory: Mapping[int, bytes]

    def reported(self) -> dict[str, int]:
        """fake_kernel's report, empty when the capture side never ran."""
        lines = self.console.split()
        if len(lines) != len(REPORTED):
            return {}
        return {name: int(value, 16) for name, value in zip(REPORTED, lines, strict=True)}


def build_stub(directory: Path, purgatory_entry: int) -> Stub:
    """Assemble and link the stub for a purgatory entered at `purgatory_entry`."""
    obj, linked, image = directory / "stub.o", directory / "stub64.elf", directory / "stub.elf"
    _run(["gcc", "-c", f"-DPURGATORY_ENTRY={purgatory_entry:#x}", str(STUB_SOURCE), "-o", str(obj)])
    _run(
        [
            "ld", "-m", "elf_x86_64", "-nostdlib", "-static", "-N", "--build-id=none",
            "--no-warn-rwx-segments", "-Ttext=0x100000", "-e", "_start", str(obj),
            "-o", str(linked),
        ]
    )  # fmt: skip
    # QEMU's multiboot loader takes 32-bit ELF only; the code inside is what counts.
    _run(["objcopy", "-O", "elf32-i386", str(linked), str(image)])
    listing = subprocess.run(["nm", str(linked)], capture_output=True, text=True, check=True)
    symbols = {
        name: int(value, 16)
        for value, _kind, name in (line.split() for line in listing.stdout.splitlines())
    }
    return Stub(image, symbols)


def run(
    directory: Path,
    stub: Stub,
    purgatory: LoadedPurgatory,
    blobs: Mapping[int, bytes],
    read_back: Sequence[tuple[int, int]] = (),
) -> Halted:
    """Boot the stub with the purgatory and `blobs` (address -> bytes) in RAM.

    Returns once the CPU halts in `purgatory_halt` or in the stub's
    `fake_kernel_done` (the firmware may hlt on the way: that does not count).
    """
    halt_start, halt_size = purgatory.symbol("purgatory_halt")
    done = stub.symbols["fake_kernel_done"]
    stops = (range(halt_start, halt_start + halt_size), range(done, done + 4))
    devices = []
    for index, (address, data) in enumerate(
        {purgatory.load_address: purgatory.buffer, **blobs}.items()
    ):
        blob = directory / f"blob{index}.bin"
        blob.write_bytes(data)
        devices += ["-device", f"loader,file={blob},addr={address:#x},force-raw=on"]
    console, qmp_path = directory / "console.txt", directory / "qmp.sock"
    qemu = subprocess.Popen(
        [
            "qemu-system-x86_64", "-accel", "tcg", "-m", GUEST_MEMORY, "-display", "none",
            "-serial", "none", "-monitor", "none", "-no-reboot", "-kernel", str(stub.image),
            "-debugcon", f"file:{console}", "-qmp", f"unix:{qmp_path},server=on,wait=off",
            *devices,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with _Qmp.connect(qmp_path, qemu) as qmp:
            rip = qmp.wait_for_halt(stops)
            memory = {}
            for address, size in read_back:
                dump = directory / f"memory-{address:x}.bin"
                qmp.command("pmemsave", {"val": address, "size": size, "filename": str(dump)})
                memory[address] = dump.read_bytes()
            qmp.command("quit")
        qemu.wait(timeout=10)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    return Halted(rip, console.read_text(), memory)


class _Qmp:
    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.reader = connection.makefile("r")

    @classmethod
    def connect(cls, path: Path, qemu: subprocess.Popen[bytes]) -> _Qmp:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if qemu.poll() is not None:
                _stdout, stderr = qemu.communicate()
                raise AssertionError(f"QEMU exited with {qemu.returncode}: {stderr.decode()}")
            try:
                connection = socket.socket(socket.AF_UNIX)
                connection.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                connection.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        qmp = cls(connection)
        qmp._read()  # greeting
        qmp.command("qmp_capabilities")
        return qmp

    def __enter__(self) -> _Qmp:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.reader.close()
        self.connection.close()

    def command(self, name: str, arguments: Mapping[str, object] | None = None) -> object:
        request: dict[str, object] = {"execute": name}
        if arguments:
            request["arguments"] = dict(arguments)
        self.connection.sendall(json.dumps(request).encode() + b"\n")
        while True:
            reply = self._read()
            if "error" in reply:
                raise AssertionError(f"QMP {name}: {reply['error']}")
            if "return" in reply:
                return reply["return"]
            # anything else is an asynchronous event: skip it

    def wait_for_halt(self, stops: Sequence[range]) -> int:
        """Poll until the CPU sits in hlt at one of `stops`; return its rip."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            text = str(self.command("human-monitor-command", {"command-line": "info registers"}))
            rip = re.search(r"RIP=([0-9a-f]+)", text)
            if rip and re.search(r"\bHLT=1\b", text):
                address = int(rip.group(1), 16)
                if any(address in stop for stop in stops):
                    return address

            time.sleep(0.05)
        raise AssertionError("the guest did not halt in time")

    def _read(self) -> dict[str, object]:
        line = self.reader.readline()
        if not line:
            raise AssertionError("QMP connection closed")
        reply: dict[str, object] = json.loads(line)
        return reply


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
