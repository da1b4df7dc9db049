"""The shipped aarch64 purgatory: load it, then patch digest, regions, registers.

The object is built from entry-aarch64.S, purgatory.c and sha256.c in this
directory by scripts/build-purgatory (cross gcc, -mcmodel=tiny); its
patched symbols are patch.py's. `purgatory_entry_regs` is {x0, x1, x2, x3,
entry}: the capture kernel starts at `entry` (the Image's load address, its
header's code0) with x0 = the DTB's physical address and x1..x3 = 0
(Documentation/arch/arm64/booting.rst). A crash image loaded with
kexec_load enters the purgatory with x0 = 0 (only kexec_file_load sets
kimage->arch.dtb_mem), so the DTB address comes from this block.

Relocations (ELF for the Arm 64-bit Architecture, IHI 0056, "Relocation
types"): the tiny code model needs only ADR_PREL_LO21 (adr) and CALL26 /
JUMP26 (bl / b), all S + A - P patched into the instruction. No veneers: a
branch out of range is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.arch import Arch, arch_info
from builder.errors import LayoutError
from builder.kexec.purgatory.loader import (
    InstructionField,
    LoadedPurgatory,
    RelocationRule,
    RelocationRules,
    load_purgatory,
)
from builder.kexec.purgatory.patch import patch_purgatory, registers_block
from builder.kexec.purgatory.patch import shipped_object as _shipped
from builder.kexec.purgatory.regions import Segment

__all__ = [
    "ENTRY_REGISTERS",
    "OBJECT_NAME",
    "RELOCATIONS",
    "build_aarch64_purgatory",
    "entry_registers_block",
    "load_aarch64_purgatory",
    "patch_aarch64_purgatory",
    "shipped_object",
]

ARCH = Arch.AARCH64
OBJECT_NAME = "purgatory-aarch64.o"
ENTRY_REGISTERS = ("x0", "x1", "x2", "x3", "entry")
"""Order of the u64 slots in `purgatory_entry_regs` (the REG_* offsets in the .S)."""

_DTB_ALIGNMENT = 8  # booting.rst: "The device tree blob (dtb) must be placed on an 8-byte boundary"
_INSTRUCTION_ALIGNMENT = 4


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


def shipped_object() -> bytes:
    """The prebuilt relocatable object shipped in the package.

    >>> shipped_object()[18]  # e_machine EM_AARCH64
    183
    """
    return _shipped(OBJECT_NAME)


def load_aarch64_purgatory(load_address: int) -> LoadedPurgatory:
    """The shipped purgatory relocated for `load_address` (not yet patched).

    Only PC-relative relocations within the object: its bytes are the same
    at every load address, its size too.

    >>> low, high = load_aarch64_purgatory(0x7AB00000), load_aarch64_purgatory(0x1_3B500000)
    >>> low.buffer == high.buffer, low.alignment, low.memsz > low.bufsz
    (True, 2048, True)
    """
    return load_purgatory(shipped_object(), load_address, RELOCATIONS)


def entry_registers_block(*, kernel_entry: int, dtb: int) -> bytes:
    """The `purgatory_entry_regs` bytes: x0 = `dtb`, x1..x3 = 0, then `kernel_entry`.

    >>> entry_registers_block(kernel_entry=0x6EC00000, dtb=0x70D0E000)[32:].hex()
    '0000c06e00000000'
    """
    if kernel_entry % _INSTRUCTION_ALIGNMENT:
        raise LayoutError(f"purgatory: kernel entry {kernel_entry:#x} is not 4-byte aligned")
    if dtb % _DTB_ALIGNMENT:
        raise LayoutError(f"purgatory: DTB address {dtb:#x} is not 8-byte aligned (booting.rst)")
    return registers_block(ENTRY_REGISTERS, {"x0": dtb, "entry": kernel_entry}, ARCH.value)


def patch_aarch64_purgatory(
    purgatory: LoadedPurgatory, segments: Sequence[Segment], *, kernel_entry: int, dtb: int
) -> LoadedPurgatory:
    """Patch a loaded purgatory to verify `segments`, then enter `kernel_entry` with x0 = `dtb`.

    >>> from builder.kexec.purgatory.regions import regions_digest
    >>> kernel = (0x6EC00000, b"Image", 0x2010000)
    >>> ready = patch_aarch64_purgatory(load_aarch64_purgatory(0x70D10000), [kernel],
    ...     kernel_entry=0x6EC00000, dtb=0x70D0E000)
    >>> ready.read("purgatory_sha256_digest") == regions_digest([kernel])
    True
    """
    registers = entry_registers_block(kernel_entry=kernel_entry, dtb=dtb)
    return patch_purgatory(purgatory, segments, registers=registers)


def build_aarch64_purgatory(
    load_address: int, segments: Sequence[Segment], *, kernel_entry: int, dtb: int
) -> LoadedPurgatory:
    """Load the shipped purgatory at `load_address` and patch it for `segments`."""
    return patch_aarch64_purgatory(
        load_aarch64_purgatory(load_address), segments, kernel_entry=kernel_entry, dtb=dtb
    )
