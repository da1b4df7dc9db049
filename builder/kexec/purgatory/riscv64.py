"""The shipped riscv64 purgatory: load it, then patch digest, regions, registers.

The object is built from entry-riscv64.S, purgatory.c and sha256.c in this
directory by scripts/build-purgatory (cross gcc, rv64imac, medany,
-mno-relax); its patched symbols are patch.py's. `purgatory_entry_regs` is
{a1, entry}: the capture kernel starts at `entry` (the Image's load address)
with a0 = the hart id the crashed kernel passed in (kept from entry) and
a1 = the DTB's physical address (Documentation/arch/riscv/boot.rst).

Relocations (RISC-V ELF psABI, "Relocations"): instruction-field updates,
all S + A - P. CALL_PLT patches an auipc + jalr pair; PCREL_HI20
patches an auipc with the rounded upper 20 bits, and the PCREL_LO12_I/S
that goes with it names the auipc's label as its symbol, taking the low 12
bits of that HI20's value (`RelocationRule.value_of`). No veneers: a target
out of range is an error. R_RISCV_RELAX and R_RISCV_ALIGN are refused: they
ask for a relaxing linker, whose deleted bytes ALIGN's padding assumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType

from builder.arch import Arch, arch_info
from builder.errors import LayoutError
from builder.kexec.purgatory.loader import (
    FieldPart,
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
    "build_riscv64_purgatory",
    "entry_registers_block",
    "load_riscv64_purgatory",
    "patch_riscv64_purgatory",
    "shipped_object",
]

ARCH = Arch.RISCV64
OBJECT_NAME = "purgatory-riscv64.o"
ENTRY_REGISTERS = ("a1", "entry")
"""Order of the u64 slots in `purgatory_entry_regs` (the REG_* offsets in the .S)."""

# The entry becomes stvec, whose direct mode needs 4-byte alignment (kexec_relocate.S).
_ENTRY_ALIGNMENT = 4
# libfdt refuses a tree that is not 8-byte aligned (scripts/dtc/libfdt/fdt.c, FDT_ERR_ALIGNMENT).
_DTB_ALIGNMENT = 8
# boot.rst: "The RISC-V kernel expects to be placed at a PMD boundary (2MB aligned for rv64".
_KERNEL_ALIGNMENT = arch_info(ARCH).image_alignment


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


def shipped_object() -> bytes:
    """The prebuilt relocatable object shipped in the package.

    >>> shipped_object()[18]  # e_machine EM_RISCV
    243
    """
    return _shipped(OBJECT_NAME)


def load_riscv64_purgatory(load_address: int) -> LoadedPurgatory:
    """The shipped purgatory relocated for `load_address` (not yet patched).

    Only PC-relative relocations within the object: its bytes are the same
    at every load address, its size too.

    >>> low, high = load_riscv64_purgatory(0xAEF46000), load_riscv64_purgatory(0x1_79BF0000)
    >>> low.buffer == high.buffer, low.alignment, low.entry % 4
    (True, 16, 0)
    """
    purgatory = load_purgatory(shipped_object(), load_address, RELOCATIONS)
    if purgatory.entry % _ENTRY_ALIGNMENT:
        raise LayoutError(f"purgatory: entry {purgatory.entry:#x} is not 4-byte aligned (stvec)")
    return purgatory


def entry_registers_block(*, kernel_entry: int, dtb: int) -> bytes:
    """The `purgatory_entry_regs` bytes: a1 = `dtb`, then `kernel_entry`.

    >>> entry_registers_block(kernel_entry=0xACC00000, dtb=0xAEF43000).hex()
    '0030f4ae000000000000c0ac00000000'
    """
    if kernel_entry % _KERNEL_ALIGNMENT:
        raise LayoutError(
            f"purgatory: kernel entry {kernel_entry:#x} is not at a 2 MiB boundary (boot.rst)"
        )
    if dtb % _DTB_ALIGNMENT:
        raise LayoutError(f"purgatory: DTB address {dtb:#x} is not 8-byte aligned (libfdt)")
    return registers_block(ENTRY_REGISTERS, {"a1": dtb, "entry": kernel_entry}, ARCH.value)


def patch_riscv64_purgatory(
    purgatory: LoadedPurgatory, segments: Sequence[Segment], *, kernel_entry: int, dtb: int
) -> LoadedPurgatory:
    """Patch a loaded purgatory to verify `segments`, then enter `kernel_entry` with a1 = `dtb`.

    >>> from builder.kexec.purgatory.regions import regions_digest
    >>> kernel = (0xACC00000, b"Image", 0x1E6C000)
    >>> ready = patch_riscv64_purgatory(load_riscv64_purgatory(0xAEF46000), [kernel],
    ...     kernel_entry=0xACC00000, dtb=0xAEF43000)
    >>> ready.read("purgatory_sha256_digest") == regions_digest([kernel])
    True
    """
    registers = entry_registers_block(kernel_entry=kernel_entry, dtb=dtb)
    return patch_purgatory(purgatory, segments, registers=registers)


def build_riscv64_purgatory(
    load_address: int, segments: Sequence[Segment], *, kernel_entry: int, dtb: int
) -> LoadedPurgatory:
    """Load the shipped purgatory at `load_address` and patch it for `segments`."""
    return patch_riscv64_purgatory(
        load_riscv64_purgatory(load_address), segments, kernel_entry=kernel_entry, dtb=dtb
    )
