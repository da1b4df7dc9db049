"""The ELF core header the capture kernel reads as `elfcorehdr=`.

It describes the crashed kernel's memory: one PT_NOTE per possible CPU (its
`crash_notes` buffer, filled at crash time), one PT_NOTE for vmcoreinfo, a
PT_LOAD for the kernel text mapping (KASLR-correct virtual address), and one
PT_LOAD per RAM range the dump must contain. /proc/vmcore in the capture
kernel is built from it; makedumpfile reads vmcoreinfo through it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from builder.kexec.crashinfo import CrashInfo
from builder.kexec.memmap import Range

__all__ = ["elf_core_header", "elf_core_header_size"]

_ET_CORE = 4
_PT_LOAD = 1
_PT_NOTE = 4
_PF_RWX = 0x7
_EHDR_SIZE = 64
_PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr


def _phdr_count(info: CrashInfo | None, ram: Sequence[Range]) -> int:
    if info is None:
        return len(ram)
    return len(info.cpu_notes) + 1 + (info.kernel_text is not None) + len(ram)


def elf_core_header_size(info: CrashInfo | None, ram: Sequence[Range]) -> int:
    """Bytes of the header for these inputs (it does not depend on its own address)."""
    return _EHDR_SIZE + _PHDR.size * _phdr_count(info, ram)


def elf_core_header(
    info: CrashInfo | None,
    ram: Sequence[Range],
    *,
    machine: int,
    ram_file_offsets: dict[int, int] | None = None,
) -> bytes:
    """ELF64 ET_CORE header: notes, kernel text, then `ram` as PT_LOADs.

    A PT_LOAD's p_offset is where the capture kernel reads the bytes of that
    physical range; it is the range's own address except for a range moved
    by a backup copy (`ram_file_offsets`: start -> where the copy lives).
    Without `info` (no captured sysfs values) only the RAM ranges are listed.
    `machine` is e_machine, the crashed kernel's `ArchInfo.elf_machine`.

    >>> from builder.arch import arch_info, host_arch
    >>> machine = arch_info(host_arch()).elf_machine
    >>> header = elf_core_header(None, [Range(0x100000, 0x200000)], machine=machine)
    >>> header[:4], len(header), int.from_bytes(header[18:20], "little") == machine
    (b'\\x7fELF', 120, True)
    """
    moved = ram_file_offsets or {}
    phdrs: list[bytes] = []
    if info is not None:
        for note in info.cpu_notes:
            phdrs.append(_PHDR.pack(_PT_NOTE, 0, note.address, 0, note.address,
                                    note.size, note.size, 0))  # fmt: skip
        phdrs.append(_PHDR.pack(_PT_NOTE, 0, info.vmcoreinfo_address, 0, info.vmcoreinfo_address,
                                info.vmcoreinfo_size, info.vmcoreinfo_size, 0))  # fmt: skip
        text = info.kernel_text
        if text is not None:
            phdrs.append(_PHDR.pack(_PT_LOAD, _PF_RWX, text.paddr, text.vaddr, text.paddr,
                                    text.size, text.size, 0))  # fmt: skip
    page_offset = info.page_offset if info is not None and info.page_offset is not None else 0
    for piece in ram:
        vaddr = page_offset + piece.start if page_offset else 0
        offset = moved.get(piece.start, piece.start)
        phdrs.append(_PHDR.pack(_PT_LOAD, _PF_RWX, offset, vaddr, piece.start,
                                piece.size, piece.size, 0))  # fmt: skip
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, LSB, EV_CURRENT, SYSV
    ehdr = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        _ET_CORE,
        machine,
        1,  # e_version
        0,  # e_entry
        _EHDR_SIZE,  # e_phoff
        0,  # e_shoff
        0,  # e_flags
        _EHDR_SIZE,
        _PHDR.size,
        len(phdrs),
        0,
        0,
        0,
    )
    return ehdr + b"".join(phdrs)
