"""Tests for builder/kexec/purgatory/aarch64.py and the loader's instruction-field relocations.

Independent oracles: GNU ld (binutils-aarch64-linux-gnu) laying out the same
sections at the same address gives the same bytes; hashlib against the
shipped object's SHA-256 code run under qemu-aarch64 (user mode, EL0);
the register hand-off of `purgatory_enter_kernel` seen by a C function.
"""

from __future__ import annotations

import io
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from builder.arch import ARCHES, Arch
from builder.errors import LayoutError
from builder.kexec.purgatory.aarch64 import ENTRY, PURGATORY, RELOCATIONS
from builder.kexec.purgatory.loader import load_purgatory
from builder.kexec.purgatory.regions import regions_digest, regions_table
from tests.support.paths import C_SOURCES, REPO
from tests.support.purgatory_harness import (
    check_purgatory_main,
    check_sha256_against_hashlib,
    run_harness,
)

SOURCES = REPO / "builder" / "kexec" / "purgatory"
CROSS = "aarch64-linux-gnu-"
LOW = 0x7ABF_0000  # the top of a 1 GiB guest's crash region
HIGH = 0x1_3B50_0000  # above 4 GiB: a ,high reservation
QEMU_USER = ARCHES[Arch.AARCH64].qemu.user  # type: ignore[union-attr]

# Every relocation type the loader knows for aarch64, between sections, both
# directions, with addends, so the assembler must leave each one to the linker.
RELOCATION_ZOO = """\
    .text
    .globl purgatory_start
purgatory_start:
    adr     x0, far_data + 8            /* ADR_PREL_LO21 forward */
    bl      helper                      /* CALL26 */
    bl      helper + 8
    b       helper + 4                  /* JUMP26 */
    .section .text.helper, "ax"
    .globl helper
helper:
    nop
    nop
    nop
    adr     x1, purgatory_start         /* ADR_PREL_LO21 backward */
    b       purgatory_start + 4         /* JUMP26 backward */
    bl      purgatory_start             /* CALL26 backward */
    .data
    .balign 16
    .globl far_data
far_data:
    .quad 1, 2, 3
    .section .note.GNU-stack, "", %progbits
"""


def _run(command: Sequence[str | Path], cwd: Path | None = None) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, f"{' '.join(map(str, command))}: {result.stderr}"
    return result.stdout


def _assemble(tmp: Path, source: str, name: str = "zoo") -> bytes:
    (tmp / f"{name}.S").write_text(source)
    _run([f"{CROSS}gcc", "-c", str(tmp / f"{name}.S"), "-o", str(tmp / f"{name}.o")])
    return (tmp / f"{name}.o").read_bytes()


def _linked_by_ld(tmp: Path, obj: bytes, address: int) -> bytes:
    """The object linked by GNU ld with the loader's layout: allocated sections with bytes
    in file order at their alignment from `address`, then .bss (pyelftools lists them)."""
    (tmp / "p.o").write_bytes(obj)
    elf: Any = ELFFile(io.BytesIO(obj))
    allocated = [section for section in elf.iter_sections() if section["sh_flags"] & 2]
    order = [s.name for s in allocated if s["sh_type"] != "SHT_NOBITS"] + [
        s.name for s in allocated if s["sh_type"] == "SHT_NOBITS"
    ]
    outputs = " ".join(f"{name} : {{ *({name}) }}" for name in order)
    (tmp / "layout.ld").write_text(
        f"SECTIONS {{ . = {address:#x}; {outputs} /DISCARD/ : {{ *(.note.GNU-stack) }} }}\n"
    )
    _run([f"{CROSS}ld", "-m", "aarch64linux", "-static", "-nostdlib", "--build-id=none",
          "--no-relax", "-e", "purgatory_start", "-T", "layout.ld", "p.o", "-o", "p.elf"],
         cwd=tmp)  # fmt: skip
    _run([f"{CROSS}objcopy", "-O", "binary", "p.elf", "p.bin"], cwd=tmp)
    return (tmp / "p.bin").read_bytes()


@pytest.mark.parametrize("address", [LOW, HIGH], ids=["below-2G", "above-4G"])
def test_shipped_object_relocated_like_gnu_ld(tmp_path: Path, address: int) -> None:
    purgatory = PURGATORY.load(address)
    assert _linked_by_ld(tmp_path, PURGATORY.shipped_object(), address) == purgatory.buffer


@pytest.mark.parametrize("address", [LOW, HIGH], ids=["below-2G", "above-4G"])
def test_every_relocation_type_like_gnu_ld(tmp_path: Path, address: int) -> None:
    obj = _assemble(tmp_path, RELOCATION_ZOO)
    relocations = _run([f"{CROSS}readelf", "-rW", str(tmp_path / "zoo.o")])
    for name in ("ADR_PREL_LO21", "CALL26", "JUMP26"):
        assert f"R_AARCH64_{name}" in relocations
    ours = load_purgatory(obj, address, RELOCATIONS).buffer
    assert _linked_by_ld(tmp_path, obj, address) == ours


def test_shipped_object_uses_only_known_relocations(tmp_path: Path) -> None:
    (tmp_path / "p.o").write_bytes(PURGATORY.shipped_object())
    listing = _run([f"{CROSS}readelf", "-rW", str(tmp_path / "p.o")])
    used = {word for word in listing.split() if word.startswith("R_AARCH64_")}
    known = {rule.name for rule in RELOCATIONS.rules.values() if rule is not None}
    assert used and used <= known


def test_patched_symbols_are_in_data() -> None:
    purgatory = PURGATORY.load(LOW)
    registers = 8 * len(PURGATORY.entry_registers)
    sizes = {"purgatory_sha256_digest": 32, "purgatory_sha256_regions": 256,
             "purgatory_entry_regs": registers, "purgatory_backup": 24}  # fmt: skip
    for name, size in sizes.items():
        symbol = purgatory.symbols[name]
        assert (symbol.section, symbol.size, symbol.in_buffer) == (".data", size, True), name
    assert purgatory.symbols["purgatory_stack"].section == ".bss"
    halt, halt_size = purgatory.symbol("purgatory_halt")
    assert LOW <= halt < LOW + purgatory.bufsz and halt_size > 0


OUT_OF_RANGE = """\
    .text
    .globl purgatory_start
purgatory_start:
    {instruction}
    .globl far
    .set far, {target}
"""


@pytest.mark.parametrize(
    ("instruction", "target", "message"),
    [
        ("bl far", LOW + (128 << 20), r"R_AARCH64_CALL26 at \.text\+0x0 against 'far' overflows"),
        ("b far", LOW - (128 << 20) - 4, r"R_AARCH64_JUMP26 .* overflows: -0x8000004"),
        ("adr x0, far", LOW + (1 << 20), r"R_AARCH64_ADR_PREL_LO21 .* does not fit 21 bits"),
        ("bl far", LOW + 0x1002, r"R_AARCH64_CALL26 .*: 0x1002 is not a multiple of 4"),
        ("adrp x0, far", LOW, r"unsupported relocation type 275 at \.text\+0x0"),
    ],
    ids=["call26-forward", "jump26-backward", "adr", "misaligned", "adrp"],
)
def test_relocation_checks(tmp_path: Path, instruction: str, target: int, message: str) -> None:
    obj = _assemble(tmp_path, OUT_OF_RANGE.format(instruction=instruction, target=target))
    with pytest.raises(LayoutError, match=message):
        load_purgatory(obj, LOW, RELOCATIONS)


def test_branch_at_the_edge_of_its_range(tmp_path: Path) -> None:
    edge = LOW + (128 << 20) - 4
    obj = _assemble(tmp_path, OUT_OF_RANGE.format(instruction="bl far", target=edge))
    (word,) = struct.unpack("<I", load_purgatory(obj, LOW, RELOCATIONS).buffer[:4])
    assert word == 0x94000000 | 0x1FF_FFFF  # bl with imm26 = +(2^25 - 1) instructions


def test_entry_registers_and_their_checks() -> None:
    block = ENTRY.registers_block(kernel_entry=0x6EC00000, dtb=0x70D0E000)
    assert struct.unpack("<5Q", block) == (0x70D0E000, 0, 0, 0, 0x6EC00000)
    with pytest.raises(LayoutError, match="DTB address 0x70d0e004 is not 8-byte aligned"):
        ENTRY.registers_block(kernel_entry=0x6EC00000, dtb=0x70D0E004)
    with pytest.raises(LayoutError, match="kernel entry 0x6ec00002 is not 4-byte aligned"):
        ENTRY.registers_block(kernel_entry=0x6EC00002, dtb=0x70D0E000)
    segments = [(0x6EC00000, b"Image", 0x2010000), (0x70C10000, b"initrd", 0x1000)]
    ready = ENTRY.build(LOW, segments, kernel_entry=0x6EC00000, dtb=0x70D0E000)
    assert ready.read("purgatory_sha256_digest") == regions_digest(segments)
    assert ready.read("purgatory_sha256_regions") == regions_table(segments)
    assert ready.read("purgatory_entry_regs") == block
    assert ready.read("purgatory_backup") == bytes(24)
    with pytest.raises(LayoutError, match="overlaps the purgatory itself"):
        ENTRY.build(LOW, [(LOW, b"", 0x1000)], kernel_entry=0, dtb=0)


# --- the shipped code, run under qemu-aarch64 -------------------------------------


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/c/purgatory_aarch64_harness.c linked with the shipped object (no libc)."""
    tmp = tmp_path_factory.mktemp("aarch64-harness")
    (tmp / "p.o").write_bytes(PURGATORY.shipped_object())
    _run([f"{CROSS}gcc", "-O2", "-static", "-nostdlib", "-ffreestanding", "-fno-pic", "-no-pie",
          "-mgeneral-regs-only", "-fno-stack-protector", "-I", str(SOURCES), "-o",
          str(tmp / "harness"), str(C_SOURCES / "purgatory_aarch64_harness.c"),
          str(tmp / "p.o")])  # fmt: skip
    return tmp / "harness"


def test_sha256_matches_hashlib_on_random_inputs(harness: Path) -> None:
    check_sha256_against_hashlib(QEMU_USER, harness, 20240601)


def test_purgatory_main_accepts_intact_and_rejects_one_changed_byte(harness: Path) -> None:
    check_purgatory_main(QEMU_USER, harness)


def test_enter_kernel_hands_over_x0_and_zeros(harness: Path) -> None:
    assert run_harness(QEMU_USER, harness, "enter").strip() == "x0=00000000fedcba98 x1=0 x2=0 x3=0"
