"""The x86 zero page (`struct boot_params`) a capture kernel starts with, as bytes.

Encoding only: where things go is the planner's (x86_64.py). Facts from
Documentation/arch/x86/zero-page.rst and boot.rst: the setup header copied
from the image, type_of_loader, the ramdisk and command line pointers split
into their low and ext_ fields, acpi_rsdp_addr, and the e820 map, whose
entries past the 128 the page holds continue in a SETUP_E820_EXT setup_data
node right behind it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builder.kexec.memmap import Kind, Range

__all__ = [
    "E820_ACPI",
    "E820_NVS",
    "E820_PMEM",
    "E820_RAM",
    "E820_RESERVED",
    "E820_TYPES",
    "SETUP_E820_EXT",
    "TYPE_OF_LOADER_KEXEC",
    "E820Entry",
    "boot_params",
    "boot_params_size",
]

# e820 types (arch/x86/include/asm/e820/types.h)
E820_RAM = 1
E820_RESERVED = 2
E820_ACPI = 3
E820_NVS = 4
E820_PMEM = 7

# zero page offsets (zero-page.rst)
_ACPI_RSDP_ADDR = 0x070
_EXT_RAMDISK_IMAGE = 0x0C0
_EXT_RAMDISK_SIZE = 0x0C4
_EXT_CMD_LINE_PTR = 0x0C8
_E820_ENTRIES = 0x1E8
_SETUP_HEADER = 0x1F1
_SETUP_HEADER_END_BYTE = 0x201  # the jump at 0x200 is 2 bytes; its offset byte ends the header
_E820_TABLE = 0x2D0
_E820_MAX_ZEROPAGE = 128
# setup header offsets (boot.rst), relative to the start of the zero page
_TYPE_OF_LOADER = 0x210
_LOADFLAGS = 0x211
_RAMDISK_IMAGE = 0x218
_RAMDISK_SIZE = 0x21C
_CMD_LINE_PTR = 0x228
_SETUP_DATA = 0x250
_BOOT_PARAMS_SIZE = 4096

TYPE_OF_LOADER_KEXEC = 0xD0  # boot.rst: loader ID 0xD (kexec-tools), version 0
SETUP_E820_EXT = 1
_E820_ENTRY = struct.Struct("<QQI")
_SETUP_DATA_HEADER = struct.Struct("<QII")

E820_TYPES = {
    Kind.SYSTEM_RAM: E820_RAM,
    Kind.RESERVED: E820_RESERVED,
    Kind.ACPI_TABLES: E820_ACPI,
    Kind.ACPI_NVS: E820_NVS,
    Kind.PERSISTENT_MEMORY: E820_PMEM,
}


@dataclass(frozen=True)
class E820Entry:
    """One entry of the capture kernel's memory map."""

    start: int
    end: int  # exclusive
    type: int

    def pack(self) -> bytes:
        return _E820_ENTRY.pack(self.start, self.end - self.start, self.type)

    def to_json(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end, "type": self.type}


def boot_params(
    kernel: bytes,
    *,
    address: int,
    e820: list[E820Entry],
    initrd: Range,
    cmdline_address: int,
    acpi_rsdp: int,
) -> bytes:
    """The zero page for the capture kernel, followed by its setup_data (if any).

    `address` is where this blob will live: a SETUP_E820_EXT node right after
    the zero page is linked by its physical address.
    """
    page = bytearray(_BOOT_PARAMS_SIZE)
    header_end = _SETUP_HEADER_END_BYTE + 1 + kernel[_SETUP_HEADER_END_BYTE]
    page[_SETUP_HEADER:header_end] = kernel[_SETUP_HEADER:header_end]
    page[_TYPE_OF_LOADER] = TYPE_OF_LOADER_KEXEC
    page[_LOADFLAGS] = 0  # as the kernel's own loader: nothing applies to the 64-bit entry
    struct.pack_into("<I", page, _RAMDISK_IMAGE, initrd.start & 0xFFFFFFFF)
    struct.pack_into("<I", page, _RAMDISK_SIZE, initrd.size & 0xFFFFFFFF)
    struct.pack_into("<I", page, _EXT_RAMDISK_IMAGE, initrd.start >> 32)
    struct.pack_into("<I", page, _EXT_RAMDISK_SIZE, initrd.size >> 32)
    struct.pack_into("<I", page, _CMD_LINE_PTR, cmdline_address & 0xFFFFFFFF)
    struct.pack_into("<I", page, _EXT_CMD_LINE_PTR, cmdline_address >> 32)
    struct.pack_into("<Q", page, _ACPI_RSDP_ADDR, acpi_rsdp)
    in_page = e820[:_E820_MAX_ZEROPAGE]
    page[_E820_ENTRIES] = len(in_page)
    for index, entry in enumerate(in_page):
        offset = _E820_TABLE + index * _E820_ENTRY.size
        page[offset : offset + _E820_ENTRY.size] = entry.pack()
    rest = e820[_E820_MAX_ZEROPAGE:]
    if not rest:
        struct.pack_into("<Q", page, _SETUP_DATA, 0)
        return bytes(page)
    payload = b"".join(entry.pack() for entry in rest)
    struct.pack_into("<Q", page, _SETUP_DATA, address + _BOOT_PARAMS_SIZE)
    node = _SETUP_DATA_HEADER.pack(0, SETUP_E820_EXT, len(payload)) + payload
    return bytes(page) + node


def boot_params_size(e820_entries: int) -> int:
    """Bytes of `boot_params` output for a map of `e820_entries` entries."""
    rest = max(0, e820_entries - _E820_MAX_ZEROPAGE)
    if not rest:
        return _BOOT_PARAMS_SIZE
    return _BOOT_PARAMS_SIZE + _SETUP_DATA_HEADER.size + rest * _E820_ENTRY.size
