"""The shipped x86_64 purgatory: load it, then patch digest, regions, registers.

The object is built from entry-x86_64.S, purgatory.c and sha256.c in this
directory by scripts/build-purgatory; its patched symbols are patch.py's;
`PURGATORY` is its record (record.py). On x86_64 `purgatory_entry_regs` is
17 x u64 in the order `ENTRY_REGISTERS`:
`rip` is the kernel's 64-bit entry (load address + 0x200), `rsi` the
boot_params address; `purgatory_backup` copies low memory after the check
and before the jump (kernels before v5.5).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from builder.arch import Arch, arch_info
from builder.errors import LayoutError
from builder.kexec.purgatory.loader import LoadedPurgatory, RelocationRule, RelocationRules
from builder.kexec.purgatory.patch import patch_purgatory
from builder.kexec.purgatory.record import PurgatoryRecord
from builder.kexec.purgatory.regions import Segment

__all__ = [
    "ENTRY_REGISTERS",
    "PURGATORY",
    "RELOCATIONS",
    "BackupRegion",
    "build_x86_64_purgatory",
    "entry_registers_block",
    "load_x86_64_purgatory",
    "patch_x86_64_purgatory",
]

ENTRY_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip",
)  # fmt: skip
"""Order of the u64 slots in `purgatory_entry_regs` (the REG_* offsets in the .S)."""

_U64_LIMIT = 1 << 64

# The relocation types the purgatory object uses (arch/x86/include/asm/elf.h
# numbers). PLT32 is PC32 here: there is no PLT, every callee is in the buffer.
ARCH = Arch.X86_64
RELOCATIONS = RelocationRules(
    arch_info(ARCH).elf_machine,
    {
        0: None,  # R_X86_64_NONE
        1: RelocationRule("R_X86_64_64", 8, pc_relative=False, signed=None),
        2: RelocationRule("R_X86_64_PC32", 4, pc_relative=True, signed=True),
        4: RelocationRule("R_X86_64_PLT32", 4, pc_relative=True, signed=True),
        10: RelocationRule("R_X86_64_32", 4, pc_relative=False, signed=False),
        11: RelocationRule("R_X86_64_32S", 4, pc_relative=False, signed=True),
        24: RelocationRule("R_X86_64_PC64", 8, pc_relative=True, signed=None),
    },
)
PURGATORY = PurgatoryRecord(ARCH, RELOCATIONS, ENTRY_REGISTERS)


@dataclass(frozen=True)
class BackupRegion:
    """Copy `size` bytes from `src` to `dst` before entering the capture kernel.

    For x86 kernels before v5.5, which reuse the first 640 KiB: the ELF core
    header then points at `dst` for that range.
    """

    src: int
    dst: int
    size: int


def load_x86_64_purgatory(load_address: int) -> LoadedPurgatory:
    """The shipped purgatory relocated for `load_address` (not yet patched).

    Its size does not depend on the address, so a layout can load it once at
    0 to learn `memsz` and `alignment`, then again where it goes.

    >>> purgatory = load_x86_64_purgatory(0x7F000000)
    >>> purgatory.memsz > purgatory.bufsz, PURGATORY.shipped_object()[:4]
    (True, b'\\x7fELF')
    """
    return PURGATORY.load(load_address)


def entry_registers_block(registers: Mapping[str, int]) -> bytes:
    """The `purgatory_entry_regs` bytes; registers not named are zero.

    >>> entry_registers_block({"rip": 0x1000200, "rsi": 0x90000})[32:40].hex()
    '0000090000000000'
    """
    return PURGATORY.registers_block(registers)


def patch_x86_64_purgatory(
    purgatory: LoadedPurgatory,
    segments: Sequence[Segment],
    *,
    kernel_entry: int,
    boot_params: int,
    backup: BackupRegion | None = None,
) -> LoadedPurgatory:
    """Patch a loaded purgatory to verify `segments` and then boot the kernel.

    `segments` are every other segment as `(start, data, memsz)`; the
    purgatory hashes memsz bytes of each (zeros beyond the data). The capture
    kernel gets rip = `kernel_entry`, rsi = `boot_params`, rsp = the top of
    the purgatory's own stack, every other register zero.

    >>> from builder.kexec.purgatory.regions import regions_digest
    >>> purgatory = load_x86_64_purgatory(0x7F000000)
    >>> kernel = (0x7C000000, b"kernel bytes", 0x2000000)
    >>> boot_params = (0x7F100000, bytes(4096), 4096)
    >>> ready = patch_x86_64_purgatory(purgatory, [kernel, boot_params],
    ...     kernel_entry=0x7C000200, boot_params=0x7F100000)
    >>> ready.read("purgatory_sha256_digest") == regions_digest([kernel, boot_params])
    True
    """
    stack_address, stack_size = purgatory.symbol("purgatory_stack")
    registers = {"rip": kernel_entry, "rsi": boot_params, "rsp": stack_address + stack_size}
    return patch_purgatory(
        purgatory,
        segments,
        registers=entry_registers_block(registers),
        backup=_backup_block(backup),
    )


def build_x86_64_purgatory(
    load_address: int,
    segments: Sequence[Segment],
    *,
    kernel_entry: int,
    boot_params: int,
    backup: BackupRegion | None = None,
) -> LoadedPurgatory:
    """Load the shipped purgatory at `load_address` and patch it for `segments`.

    >>> ready = build_x86_64_purgatory(0x7F000000, [(0x7C000000, b"k", 0x1000)],
    ...     kernel_entry=0x7C000200, boot_params=0x7F100000)
    >>> ready.entry == ready.symbol("purgatory_start")[0]
    True
    """
    return patch_x86_64_purgatory(
        load_x86_64_purgatory(load_address),
        segments,
        kernel_entry=kernel_entry,
        boot_params=boot_params,
        backup=backup,
    )


def _backup_block(backup: BackupRegion | None) -> bytes:
    if backup is None:
        return bytes(24)
    src, dst, size = backup.src, backup.dst, backup.size
    if size <= 0:
        raise LayoutError(f"purgatory: backup size must be positive, got {size}")
    if min(src, dst) < 0 or max(src, dst) + size > _U64_LIMIT:
        raise LayoutError("purgatory: backup region outside the 64-bit address space")
    if src < dst + size and dst < src + size:
        raise LayoutError(
            f"purgatory: backup source {src:#x} and destination {dst:#x} overlap ({size:#x} bytes)"
        )
    return struct.pack("<3Q", src, dst, size)
