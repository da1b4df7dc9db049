"""The shipped aarch64 purgatory: load it, then patch digest, regions, registers.

The object is built from entry-aarch64.S, purgatory.c and sha256.c in this
directory by scripts/build-purgatory (cross gcc, -mcmodel=tiny); its
patched symbols are patch.py's; `PURGATORY` is its record (record.py),
`ENTRY` how it enters the kernel (devicetree.py). `purgatory_entry_regs` is
{x0, x1, x2, x3, entry}: the capture kernel starts at `entry` (the Image's load address, its
header's code0) with x0 = the DTB's physical address and x1..x3 = 0
(Documentation/arch/arm64/booting.rst). A crash image loaded with
kexec_load enters the purgatory with x0 = 0 (only kexec_file_load sets
kimage->arch.dtb_mem), so the DTB address comes from this block.

Relocations (ELF for the Arm 64-bit Architecture, IHI 0056, "Relocation
types"): the tiny code model needs only ADR_PREL_LO21 (adr) and CALL26 /
JUMP26 (bl / b), all S + A - P patched into the instruction. No veneers: a
branch out of range is an error. Only PC-relative relocations within the
object: its bytes are the same at every load address, its size too.

>>> low, high = PURGATORY.load(0x7AB00000), PURGATORY.load(0x1_3B500000)
>>> PURGATORY.shipped_object()[18], low.buffer == high.buffer, low.alignment, low.memsz > low.bufsz
(183, True, 2048, True)
>>> ENTRY.registers_block(kernel_entry=0x6EC00000, dtb=0x70D0E000)[32:].hex()
'0000c06e00000000'
"""

from __future__ import annotations

from builder.arch import Arch, arch_info
from builder.kexec.purgatory.devicetree import DeviceTreeEntry
from builder.kexec.purgatory.loader import InstructionField, RelocationRule, RelocationRules
from builder.kexec.purgatory.record import PurgatoryRecord

__all__ = ["ENTRY", "PURGATORY", "RELOCATIONS"]

ARCH = Arch.AARCH64


def _adr_immediate(word: int, immediate: int) -> int:
    """ADR: immlo in bits [30:29], immhi in bits [23:5]."""
    word &= ~((0x3 << 29) | (0x7FFFF << 5))
    return word | (immediate & 0x3) << 29 | (immediate >> 2) << 5


def _branch_immediate(word: int, immediate: int) -> int:
    """B and BL: imm26 in bits [25:0], in instructions."""
    return word & ~0x3FF_FFFF | immediate


_ADR = InstructionField(bits=21, scale=0, insert=_adr_immediate)
_BRANCH = InstructionField(bits=26, scale=2, insert=_branch_immediate)

RELOCATIONS = RelocationRules(
    arch_info(ARCH).elf_machine,
    {
        0: None,  # R_AARCH64_NONE
        274: RelocationRule("R_AARCH64_ADR_PREL_LO21", 4, True, None, (_ADR,)),
        282: RelocationRule("R_AARCH64_JUMP26", 4, True, None, (_BRANCH,)),
        283: RelocationRule("R_AARCH64_CALL26", 4, True, None, (_BRANCH,)),
    },
)

# The order of the u64 slots in `purgatory_entry_regs` (the REG_* offsets in the .S).
PURGATORY = PurgatoryRecord(ARCH, RELOCATIONS, ("x0", "x1", "x2", "x3", "entry"))

ENTRY = DeviceTreeEntry(
    PURGATORY,
    dtb_register="x0",
    # booting.rst: "The device tree blob (dtb) must be placed on an 8-byte boundary"
    dtb_alignment=8,
    dtb_alignment_source="booting.rst",
    kernel_alignment=4,  # an instruction
    kernel_misaligned="is not 4-byte aligned",
)
