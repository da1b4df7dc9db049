"""Tests for builder/kexec/purgatory/riscv64.py and the loader's RISC-V relocations.

Independent oracles: GNU ld (binutils-riscv64-linux-gnu, --no-relax) laying
out the same sections at the same address gives the same bytes, for the
shipped object and for an object with every relocation type the loader
knows; hashlib against the shipped object's SHA-256 code run under
qemu-riscv64 (user mode); the register hand-off of `purgatory_enter_kernel`
seen by a C function.
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
from builder.kexec.purgatory.loader import load_purgatory
from builder.kexec.purgatory.regions import regions_digest, regions_table
from builder.kexec.purgatory.riscv64 import ENTRY, PURGATORY, RELOCATIONS
from tests.support.paths import C_SOURCES, REPO
from tests.support.purgatory_harness import (
    check_purgatory_main,
    check_sha256_against_hashlib,
    run_harness,
)

SOURCES = REPO / "builder" / "kexec" / "purgatory"
CROSS = "riscv64-linux-gnu-"
ISA = ("-march=rv64imac_zicsr_zifencei", "-mabi=lp64")
LOW = 0xAEF4_6000  # after the DTB in a 1 GiB guest's crash region
HIGH = 0x1_79BF_0000  # above 4 GiB: a ,high reservation
TOP = 0xFFFF_F000_0000  # near the top of a 48-bit physical address space
QEMU_USER = ARCHES[Arch.RISCV64].qemu.user  # type: ignore[union-attr]

# Every relocation type the loader knows for riscv64: across sections and within one,
# forward and backward, two LO12s on one HI20, an addend at the lo12 sign flip and a
# target 1 MiB away, so the assembler leaves each one to the linker.
RELOCATION_ZOO = """\
    .option norelax
    .text
    .globl purgatory_start
    .balign 4
purgatory_start:
    jal     ra, helper                  /* JAL */
1:  auipc   t0, %pcrel_hi(data_word)    /* PCREL_HI20 */
    sd      t1, %pcrel_lo(1b)(t0)       /* PCREL_LO12_S */
    lw      t2, %pcrel_lo(1b)(t0)       /* PCREL_LO12_I, the same HI20 */
    call    helper                      /* CALL_PLT */
    call    helper + 8
    tail    helper
    beq     a0, a1, 3f                  /* BRANCH */
    c.beqz  a0, 3f                      /* RVC_BRANCH */
    c.j     3f                          /* RVC_JUMP */
2:  auipc   t3, %pcrel_hi(data_word + 0x7f8)
    addi    t3, t3, %pcrel_lo(2b)
3:  auipc   t4, %pcrel_hi(big)
    ld      t4, %pcrel_lo(3b)(t4)
    bne     a0, a1, 2b
    c.bnez  a0, 2b
    c.j     1b
    ret
    .section .text.helper, "ax", @progbits
    .balign 4
    .globl helper
helper:
    nop
    jal     zero, purgatory_start
    ret
    .data
    .balign 8
data_word:
    .quad 0
    .section .data.far, "aw", @progbits
    .skip 0x100000
big:
    .quad 0x1122334455667788
    .section .note.GNU-stack, "", @progbits
"""


def _run(command: Sequence[str | Path], cwd: Path | None = None) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, f"{' '.join(map(str, command))}: {result.stderr}"
    return result.stdout


def _assemble(tmp: Path, source: str, *flags: str, name: str = "zoo") -> bytes:
    (tmp / f"{name}.S").write_text(source)
    _run([f"{CROSS}gcc", *ISA, *flags, "-c", tmp / f"{name}.S", "-o", tmp / f"{name}.o"])
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
    _run([f"{CROSS}ld", "-m", "elf64lriscv", "--no-relax", "-static", "-nostdlib",
          "--build-id=none", "-e", "purgatory_start", "-T", "layout.ld", "p.o", "-o", "p.elf"],
         cwd=tmp)  # fmt: skip
    _run([f"{CROSS}objcopy", "-O", "binary", "p.elf", "p.bin"], cwd=tmp)
    return (tmp / "p.bin").read_bytes()


ADDRESSES = pytest.mark.parametrize(
    "address", [LOW, HIGH, TOP], ids=["below-4G", "above-4G", "top-48-bit"]
)


@ADDRESSES
def test_shipped_object_relocated_like_gnu_ld(tmp_path: Path, address: int) -> None:
    purgatory = PURGATORY.load(address)
    assert _linked_by_ld(tmp_path, PURGATORY.shipped_object(), address) == purgatory.buffer


@ADDRESSES
def test_every_relocation_type_like_gnu_ld(tmp_path: Path, address: int) -> None:
    obj = _assemble(tmp_path, RELOCATION_ZOO, "-mno-relax")
    listing = _run([f"{CROSS}readelf", "-rW", tmp_path / "zoo.o"])
    used = {word for word in listing.split() if word.startswith("R_RISCV_")}
    known = {rule.name for rule in RELOCATIONS.rules.values() if rule is not None}
    assert used == known  # the zoo exercises every rule, and nothing else
    ours = load_purgatory(obj, address, RELOCATIONS).buffer
    assert _linked_by_ld(tmp_path, obj, address) == ours


def test_shipped_object_uses_only_known_relocations(tmp_path: Path) -> None:
    (tmp_path / "p.o").write_bytes(PURGATORY.shipped_object())
    listing = _run([f"{CROSS}readelf", "-rW", tmp_path / "p.o"])
    used = {word for word in listing.split() if word.startswith("R_RISCV_")}
    known = {rule.name for rule in RELOCATIONS.rules.values() if rule is not None}
    assert {"R_RISCV_PCREL_HI20", "R_RISCV_PCREL_LO12_I", "R_RISCV_CALL_PLT"} <= used <= known
    # No F/D/V: the float ABI flags of e_flags are clear (EF_RISCV_FLOAT_ABI, bits 1-2).
    elf: Any = ELFFile(io.BytesIO(PURGATORY.shipped_object()))
    assert elf["e_flags"] & 0x6 == 0


def test_patched_symbols_are_in_data() -> None:
    purgatory = PURGATORY.load(LOW)
    registers = 8 * len(PURGATORY.entry_registers)
    sizes = {"purgatory_sha256_digest": 32, "purgatory_sha256_regions": 256,
             "purgatory_entry_regs": registers, "purgatory_backup": 24}  # fmt: skip
    for name, size in sizes.items():
        symbol = purgatory.symbols[name]
        assert (symbol.section, symbol.size, symbol.in_buffer) == (".data", size, True), name
    assert purgatory.symbols["purgatory_stack"].section == ".bss"
    for name in ("purgatory_start", "purgatory_halt"):  # both become stvec
        address, size = purgatory.symbol(name)
        assert LOW <= address < LOW + purgatory.bufsz and size > 0 and address % 4 == 0


RELAXED = """\
    .text
    .globl purgatory_start
purgatory_start:
    call    helper
    .balign 16
helper:
    ret
"""


def test_an_object_built_for_relaxation_is_refused(tmp_path: Path) -> None:
    obj = _assemble(tmp_path, RELAXED)  # relaxation on: R_RISCV_RELAX and R_RISCV_ALIGN
    assert "R_RISCV_ALIGN" in _run([f"{CROSS}readelf", "-rW", tmp_path / "zoo.o"])
    refused = r"R_RISCV_(RELAX|ALIGN): the object was built for a relaxing linker \(build it"
    with pytest.raises(LayoutError, match=refused):
        load_purgatory(obj, LOW, RELOCATIONS)


# One raw instruction with an explicit relocation against an absolute symbol, so the
# assembler cannot resolve or rewrite it.
ONE_RELOCATION = """\
    .option norelax
    .text
    .globl purgatory_start
purgatory_start:
    .reloc ., {type}, far
    {instruction}
    .globl far
    .set far, {target}
"""
BEQ, JAL, CALL = ".word 0x00b50063", ".word 0x0000006f", ".word 0x00000097, 0x000080e7"
C_BEQZ, C_J = ".half 0xc101", ".half 0xa001"


@pytest.mark.parametrize(
    ("type_", "instruction", "target", "message"),
    [
        ("R_RISCV_BRANCH", BEQ, LOW + 4096, r"R_RISCV_BRANCH .* 0x1000 does not fit 13 bits"),
        ("R_RISCV_BRANCH", BEQ, LOW - 4098, r"R_RISCV_BRANCH .* -0x1002 does not fit 13 bits"),
        ("R_RISCV_BRANCH", BEQ, LOW + 6, None),
        ("R_RISCV_BRANCH", BEQ, LOW + 3, r"R_RISCV_BRANCH at .* 'far': 0x3 is not a multiple of 2"),
        ("R_RISCV_JAL", JAL, LOW + (1 << 20), r"R_RISCV_JAL .* does not fit 21 bits"),
        ("R_RISCV_CALL_PLT", CALL, LOW + 0x7FFF_F800, r"R_RISCV_CALL_PLT .* does not fit 32"),
        ("R_RISCV_CALL_PLT", CALL, LOW - 0x8000_0801, r"R_RISCV_CALL_PLT .* does not fit 32"),
        ("R_RISCV_RVC_BRANCH", C_BEQZ, LOW + 256, r"R_RISCV_RVC_BRANCH .* does not fit 9 bits"),
        ("R_RISCV_RVC_JUMP", C_J, LOW - 2050, r"R_RISCV_RVC_JUMP .* does not fit 12 bits"),
    ],
    ids=str.split(
        "branch-forward branch-backward branch-ok branch-odd jal call-forward "
        "call-backward c.beqz c.j"
    ),
)
def test_range_checks(
    tmp_path: Path, type_: str, instruction: str, target: int, message: str | None
) -> None:
    source = ONE_RELOCATION.format(type=type_, instruction=instruction, target=target)
    obj = _assemble(tmp_path, source, "-mno-relax")
    if message is None:
        (word,) = struct.unpack("<I", load_purgatory(obj, LOW, RELOCATIONS).buffer[:4])
        assert word == 0x00B50363  # beq a0, a1, +6
        return
    with pytest.raises(LayoutError, match=message):
        load_purgatory(obj, LOW, RELOCATIONS)


def test_call_at_the_edge_of_its_range(tmp_path: Path) -> None:
    # +0x7ffff7ff is the farthest an auipc + jalr pair reaches: hi20 0x7ffff, lo12 +0x7ff.
    source = ONE_RELOCATION.format(type="R_RISCV_CALL_PLT", instruction=CALL,
                                   target=LOW + 0x7FFF_F7FF)  # fmt: skip
    buffer = load_purgatory(_assemble(tmp_path, source, "-mno-relax"), LOW, RELOCATIONS).buffer
    auipc, jalr = struct.unpack("<II", buffer[:8])
    assert (auipc >> 12, jalr >> 20) == (0x7FFFF, 0x7FF)


def test_a_lo12_without_its_hi20_is_refused(tmp_path: Path) -> None:
    source = """\
    .option norelax
    .text
    .globl purgatory_start
purgatory_start:
    .globl lonely
lonely:
    .reloc ., R_RISCV_PCREL_LO12_I, lonely
    .word   0x00028293                  /* addi t0, t0, 0 (uncompressed) */
"""
    obj = _assemble(tmp_path, source, "-mno-relax")
    lonely = r"R_RISCV_PCREL_LO12_I at \.text\+0x0 against 'lonely': no R_RISCV_PCREL_HI20 at "
    with pytest.raises(LayoutError, match=lonely + "0xaef46000"):
        load_purgatory(obj, LOW, RELOCATIONS)


def test_entry_registers_and_their_checks() -> None:
    block = ENTRY.registers_block(kernel_entry=0xACC00000, dtb=0xAEF43000)
    assert struct.unpack("<2Q", block) == (0xAEF43000, 0xACC00000)
    with pytest.raises(LayoutError, match="DTB address 0xaef43004 is not 8-byte aligned"):
        ENTRY.registers_block(kernel_entry=0xACC00000, dtb=0xAEF43004)
    with pytest.raises(LayoutError, match="kernel entry 0xacc01000 is not at a 2 MiB boundary"):
        ENTRY.registers_block(kernel_entry=0xACC01000, dtb=0xAEF43000)
    segments = [(0xACC00000, b"Image", 0x1E6C000), (0xAEC00000, b"initrd", 0x1000)]
    ready = ENTRY.build(LOW, segments, kernel_entry=0xACC00000, dtb=0xAEF43000)
    assert ready.read("purgatory_sha256_digest") == regions_digest(segments)
    assert ready.read("purgatory_sha256_regions") == regions_table(segments)
    assert ready.read("purgatory_entry_regs") == block
    assert ready.read("purgatory_backup") == bytes(24)
    with pytest.raises(LayoutError, match="overlaps the purgatory itself"):
        ENTRY.build(LOW, [(LOW, b"", 0x1000)], kernel_entry=0, dtb=0)


# --- the shipped code, run under qemu-riscv64 ---------------------------------------


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/c/purgatory_riscv64_harness.c linked with the shipped object (no libc)."""
    tmp = tmp_path_factory.mktemp("riscv64-harness")
    (tmp / "p.o").write_bytes(PURGATORY.shipped_object())
    _run([f"{CROSS}gcc", *ISA, "-O2", "-static", "-nostdlib", "-ffreestanding", "-fno-pic",
          "-no-pie", "-mcmodel=medany", "-mno-relax", "-Wl,--no-relax", "-fno-stack-protector",
          "-I", SOURCES, "-o", tmp / "harness", C_SOURCES / "purgatory_riscv64_harness.c",
          tmp / "p.o"])  # fmt: skip
    return tmp / "harness"


def test_sha256_matches_hashlib_on_random_inputs(harness: Path) -> None:
    check_sha256_against_hashlib(QEMU_USER, harness, 20261201)


def test_purgatory_main_accepts_intact_and_rejects_one_changed_byte(harness: Path) -> None:
    check_purgatory_main(QEMU_USER, harness)


def test_enter_kernel_keeps_the_hart_id_and_hands_over_the_dtb(harness: Path) -> None:
    assert run_harness(QEMU_USER, harness, "enter").strip() == "a0=3 a1=0000001feedbeef8"
