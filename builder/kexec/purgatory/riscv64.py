"""The shipped riscv64 purgatory: load it, then patch digest, regions, registers.

The object is built from entry-riscv64.S, purgatory.c and sha256.c in this
directory by scripts/build-purgatory (cross gcc, rv64imac, medany,
-mno-relax); its patched symbols are patch.py's; `PURGATORY` is its record
(record.py), `ENTRY` how it enters the kernel (devicetree.py).
`purgatory_entry_regs` is {a1, entry}: the capture kernel starts at `entry`
(the Image's load address) with a0 = the hart id the crashed kernel passed
in (kept from entry) and a1 = the DTB's physical address
(Documentation/arch/riscv/boot.rst).

Relocations (RISC-V ELF psABI, "Relocations"): instruction-field updates,
all S + A - P. CALL_PLT patches an auipc + jalr pair; PCREL_HI20
patches an auipc with the rounded upper 20 bits, and the PCREL_LO12_I/S
that goes with it names the auipc's label as its symbol, taking the low 12
bits of that HI20's value (`RelocationRule.value_of`). No veneers: a target
out of range is an error. R_RISCV_RELAX and R_RISCV_ALIGN are refused: they
ask for a relaxing linker, whose deleted bytes ALIGN's padding assumes.
Only PC-relative relocations within the object: its bytes are the same at
every load address, its size too.

>>> low, high = PURGATORY.load(0xAEF46000), PURGATORY.load(0x1_79BF0000)
>>> PURGATORY.shipped_object()[18], low.buffer == high.buffer, low.alignment, low.entry % 4
(243, True, 16, 0)
>>> ENTRY.registers_block(kernel_entry=0xACC00000, dtb=0xAEF43000).hex()
'0030f4ae000000000000c0ac00000000'
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from builder.arch import Arch, arch_info
from builder.kexec.purgatory.devicetree import DeviceTreeEntry
from builder.kexec.purgatory.loader import (
    FieldPart,
    InstructionField,
    RelocationRule,
    RelocationRules,
)
from builder.kexec.purgatory.record import PurgatoryRecord

__all__ = ["ENTRY", "PURGATORY", "RELOCATIONS"]

ARCH = Arch.RISCV64


# Where each instruction format keeps its immediate (the ISA manual's figures):
# (high, low, at) puts immediate bits [high:low] at instruction bits from `at` up.
_Pieces = tuple[tuple[int, int, int], ...]


def _format(pieces: _Pieces, dropped_bits: int = 0) -> Callable[[int, int], int]:
    """An `InstructionField.insert` that scatters the immediate, whose low `dropped_bits`
    the field's scale removed, as `pieces` say, keeping every other bit of the word."""
    spans = [((1 << (high - low + 1)) - 1, low, at) for high, low, at in pieces]
    immediate_bits = sum(mask << at for mask, _, at in spans)

    def insert(word: int, immediate: int) -> int:
        value = immediate << dropped_bits
        scattered = sum(((value >> low) & mask) << at for mask, low, at in spans)
        return word & ~immediate_bits | scattered

    return insert


_B_TYPE = _format(((12, 12, 31), (10, 5, 25), (4, 1, 8), (11, 11, 7)), 1)  # beq, bne, ...
_J_TYPE = _format(((20, 20, 31), (10, 1, 21), (11, 11, 20), (19, 12, 12)), 1)  # jal
_U_TYPE = _format(((19, 0, 12),))  # auipc
_I_TYPE = _format(((11, 0, 20),))  # addi, ld, jalr
_S_TYPE = _format(((11, 5, 25), (4, 0, 7)))  # sd, sw
_CB_TYPE = _format(((8, 8, 12), (4, 3, 10), (7, 6, 5), (2, 1, 3), (5, 5, 2)), 1)  # c.beqz
_CJ_TYPE = _format(((11, 11, 12), (4, 4, 11), (9, 8, 9), (10, 10, 8), (6, 6, 7), (7, 7, 6),
                    (3, 1, 3), (5, 5, 2)), 1)  # c.j  # fmt: skip

_BRANCH = InstructionField(bits=12, scale=1, insert=_B_TYPE)  # +-4 KiB
_JAL = InstructionField(bits=20, scale=1, insert=_J_TYPE)  # +-1 MiB
_HI20 = InstructionField(bits=20, scale=12, insert=_U_TYPE, part=FieldPart.HIGH)  # +-2 GiB
_LO12_I = InstructionField(bits=12, scale=0, insert=_I_TYPE, part=FieldPart.LOW)
_LO12_S = InstructionField(bits=12, scale=0, insert=_S_TYPE, part=FieldPart.LOW)
_JALR_LO12 = InstructionField(bits=12, scale=0, insert=_I_TYPE, offset=4, part=FieldPart.LOW)
_RVC_BRANCH = InstructionField(bits=8, scale=1, insert=_CB_TYPE, width=2)  # +-256 B
_RVC_JUMP = InstructionField(bits=11, scale=1, insert=_CJ_TYPE, width=2)  # +-2 KiB

_PCREL_HI20 = 23
_RELAXATION = "the object was built for a relaxing linker (build it with -mno-relax)"

RELOCATIONS = RelocationRules(
    arch_info(ARCH).elf_machine,
    {
        0: None,  # R_RISCV_NONE
        16: RelocationRule("R_RISCV_BRANCH", 4, True, None, (_BRANCH,)),
        17: RelocationRule("R_RISCV_JAL", 4, True, None, (_JAL,)),
        19: RelocationRule("R_RISCV_CALL_PLT", 8, True, None, (_HI20, _JALR_LO12)),
        _PCREL_HI20: RelocationRule("R_RISCV_PCREL_HI20", 4, True, None, (_HI20,)),
        24: RelocationRule("R_RISCV_PCREL_LO12_I", 4, False, None, (_LO12_I,), _PCREL_HI20),
        25: RelocationRule("R_RISCV_PCREL_LO12_S", 4, False, None, (_LO12_S,), _PCREL_HI20),
        44: RelocationRule("R_RISCV_RVC_BRANCH", 2, True, None, (_RVC_BRANCH,)),
        45: RelocationRule("R_RISCV_RVC_JUMP", 2, True, None, (_RVC_JUMP,)),
    },
    MappingProxyType({43: f"R_RISCV_ALIGN: {_RELAXATION}", 51: f"R_RISCV_RELAX: {_RELAXATION}"}),
)


PURGATORY = PurgatoryRecord(
    ARCH,
    RELOCATIONS,
    ("a1", "entry"),  # the u64 slots of `purgatory_entry_regs` (the REG_* offsets in the .S)
    # The entry becomes stvec, whose direct mode needs 4-byte alignment (kexec_relocate.S).
    entry_alignment=4,
    entry_alignment_reason="stvec",
)

ENTRY = DeviceTreeEntry(
    PURGATORY,
    dtb_register="a1",
    # libfdt refuses a tree that is not 8-byte aligned (scripts/dtc/libfdt/fdt.c,
    # FDT_ERR_ALIGNMENT).
    dtb_alignment=8,
    dtb_alignment_source="libfdt",
    # boot.rst: "The RISC-V kernel expects to be placed at a PMD boundary (2MB aligned for rv64".
    kernel_alignment=arch_info(ARCH).image_alignment,
    kernel_misaligned="is not at a 2 MiB boundary (boot.rst)",
)
