"""x86_64 crash layout: bzImage, initrd, boot_params, command line, ELF core header, purgatory.

Pure planning: bytes and a memory map in, a `Layout` out. Facts from
Documentation/arch/x86/boot.rst and zero-page.rst; placement rules from what
the kernel's own loader (arch/x86/kernel/kexec-bzimage64.c, crash.c) does:

- kernel: the bzImage minus its real-mode setup, memsz `init_size`, aligned
  to `kernel_alignment`, at or above max(1 MiB, `pref_address`) (a
  relocatable kernel loaded lower moves itself to LOAD_PHYSICAL_ADDR, which
  is outside the crash region);
- boot_params: the setup header copied from the image, type_of_loader 0xD0,
  ramdisk and command line pointers split into the low and ext_ fields, the
  capture kernel's e820 map (more than 128 entries continue in a
  SETUP_E820_EXT setup_data right behind the zero page), acpi_rsdp_addr;
- the capture kernel's memory map: the System RAM below 1 MiB (the main
  kernel keeps it reserved, so the capture kernel may use it), the firmware
  ranges (ACPI tables, ACPI NVS, reserved), the low crash range, and the
  main crash range minus the ELF core header (and backup copy) as RAM;
- ELF core header: notes, kernel text, System RAM minus the crash ranges and
  minus the low 1 MiB (never used by the main kernel since v5.5), or, with a
  backup region, the first 640 KiB read from the copy;
- purgatory: the shipped object, relocated to its place and patched with the
  digest of every other segment and the capture kernel's entry registers.

Segments are placed top-down in the crash region, the order kexec-tools uses
(purgatory and small pieces at the top, the initrd lowest).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from builder.binfmt.kernelimg import BzImageHeader, ImageFormat, parse_kernel_image
from builder.errors import ImageError, LayoutError
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.layout import (
    KEXEC_ARCH_X86_64,
    KEXEC_ON_CRASH,
    KexecSegment,
    Layout,
    check_layout,
    segments_for_digest,
)
from builder.kexec.layout.elfcore import EM_X86_64, elf_core_header, elf_core_header_size
from builder.kexec.memmap import PAGE_SIZE, HoleAllocator, Kind, MemoryMap, Range, subtract
from builder.kexec.purgatory.x86_64 import (
    BackupRegion,
    build_x86_64_purgatory,
    load_x86_64_purgatory,
)

__all__ = [
    "BACKUP_SIZE",
    "E820_ACPI",
    "E820_NVS",
    "E820_RAM",
    "E820_RESERVED",
    "E820Entry",
    "X86_64Inputs",
    "boot_params",
    "capture_e820",
    "plan_x86_64",
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
_INITRD_ADDR_MAX = 0x22C
_SETUP_DATA = 0x250
_BOOT_PARAMS_SIZE = 4096

TYPE_OF_LOADER_KEXEC = 0xD0  # boot.rst: loader ID 0xD (kexec-tools), version 0
SETUP_E820_EXT = 1
_E820_ENTRY = struct.Struct("<QQI")
_SETUP_DATA_HEADER = struct.Struct("<QII")

_ONE_MIB = 1 << 20
_FOUR_GIB = 1 << 32
_KERNEL_ENTRY_64 = 0x200  # the 64-bit entry, from the protected-mode code start
BACKUP_SIZE = 640 << 10  # the low RAM that kernels before v5.5 may reuse

_E820_TYPES = {
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


@dataclass(frozen=True)
class X86_64Inputs:
    """What an x86_64 crash layout is computed from."""

    kernel: bytes  # the bzImage file
    initrd: bytes
    cmdline: str  # without elfcorehdr=, which the layout adds
    memory: MemoryMap
    info: CrashInfo | None  # None: offline without captured sysfs values
    backup: bool = False  # copy the low 640 KiB before jumping (kernels before v5.5)
    kernel_name: str = "vmlinuz"


def _page_up(value: int) -> int:
    return (value + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _bzimage(inputs: X86_64Inputs) -> BzImageHeader:
    try:
        image = parse_kernel_image(inputs.kernel, inputs.kernel_name)
    except ImageError as error:
        raise LayoutError(str(error)) from None
    header = image.bzimage
    if image.format is not ImageFormat.BZIMAGE or header is None:
        raise LayoutError(
            f"{inputs.kernel_name}: is {image.format}, the x86_64 layout needs a bzImage"
        )
    if not header.kernel_64:
        raise LayoutError(f"{inputs.kernel_name}: no 64-bit entry point (xloadflags bit 0)")
    if not header.relocatable_kernel:
        raise LayoutError(
            f"{inputs.kernel_name}: not relocatable; it cannot run in the crash region"
        )
    if header.protocol < 0x20C:
        raise LayoutError(
            f"{inputs.kernel_name}: boot protocol {header.protocol_version} predates the "
            "64-bit entry fields this layout uses (2.12)"
        )
    return header


def capture_e820(
    memory: MemoryMap, excluded: list[Range], *, low_ram: bool = True
) -> list[E820Entry]:
    """The capture kernel's memory map, sorted.

    RAM: the System RAM below 1 MiB (with `low_ram`), the low crash range and
    the main crash range minus `excluded` (ELF core header, backup copy).
    Firmware: ACPI tables, ACPI NVS and reserved ranges as the main kernel saw them.
    """
    entries: list[E820Entry] = []
    if low_ram:
        for piece in memory.system_ram():
            if piece.start < _ONE_MIB:
                entries.append(E820Entry(piece.start, min(piece.end, _ONE_MIB), E820_RAM))
    for region in memory.firmware_regions():
        entries.append(E820Entry(region.range.start, region.range.end, _E820_TYPES[region.kind]))
    low = memory.crash_low_region()
    if low is not None:
        entries.append(E820Entry(low.start, low.end, E820_RAM))
    for piece in subtract([memory.crash_region()], excluded):
        entries.append(E820Entry(piece.start, piece.end, E820_RAM))
    entries.sort(key=lambda entry: (entry.start, entry.end))
    for lower, upper in itertools.pairwise(entries):
        if upper.start < lower.end:
            raise LayoutError(
                f"capture memory map: {upper.start:#x}-{upper.end:#x} (type {upper.type}) "
                f"overlaps {lower.start:#x}-{lower.end:#x} (type {lower.type})"
            )
    return entries


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


def _elfcorehdr_option(address: int) -> str:
    # The kernel parses elfcorehdr= with memparse: a K suffix keeps it short.
    return f"elfcorehdr={address >> 10}K" if address % 1024 == 0 else f"elfcorehdr={address:#x}"


def plan_x86_64(inputs: X86_64Inputs) -> Layout:
    """Plan every segment of an x86_64 crash load and check the result.

    >>> layout = plan_x86_64(inputs)  # doctest: +SKIP
    >>> [segment.name for segment in layout.segments]  # doctest: +SKIP
    ['kernel', 'initrd', 'boot_params', 'cmdline', 'elfcorehdr', 'purgatory']
    """
    header = _bzimage(inputs)
    memory = inputs.memory
    region = memory.crash_region()
    above_4g = header.loadable_above_4g
    low_limit = region.end if above_4g else min(region.end, _FOUR_GIB)
    allocator = HoleAllocator(region)

    def place(name: str, size: int, *, align: int = PAGE_SIZE, limit: int = low_limit,
              minimum: int = 0) -> Range:  # fmt: skip
        try:
            return allocator.allocate(_page_up(size), align=align, max_addr=limit, min_addr=minimum)
        except LayoutError as error:
            raise LayoutError(f"segment {name!r}: {error}") from None

    # RAM that the dump describes, and where each piece is read from.
    backup: BackupRegion | None = None
    backup_range: Range | None = None
    ram = list(memory.ram_minus_crash())
    offsets: dict[int, int] = {}
    if inputs.backup:
        backup_range = place("backup", BACKUP_SIZE)
        backup = BackupRegion(0, backup_range.start, BACKUP_SIZE)
        ram = [*subtract(ram, [Range(BACKUP_SIZE, _ONE_MIB)])]
        offsets = {p.start: backup_range.start + p.start for p in ram if p.end <= BACKUP_SIZE}
    else:
        # The low 1 MiB is reserved by the main kernel since v5.5 and given to the
        # capture kernel as RAM; the dump leaves it out, as the kernel's loader does.
        ram = [*subtract(ram, [Range(0, _ONE_MIB)])]

    header_size = elf_core_header_size(inputs.info, ram)
    elfcorehdr_range = place("elfcorehdr", header_size)
    elfcorehdr = elf_core_header(inputs.info, ram, machine=EM_X86_64, ram_file_offsets=offsets)

    purgatory_probe = load_x86_64_purgatory(0)
    purgatory_range = place(
        "purgatory", purgatory_probe.memsz, align=max(PAGE_SIZE, purgatory_probe.alignment)
    )

    excluded = [elfcorehdr_range] + ([backup_range] if backup_range is not None else [])
    e820 = capture_e820(memory, excluded)
    params_range = place("boot_params", boot_params_size(len(e820)), limit=low_limit)

    cmdline = " ".join(part for part in (inputs.cmdline.strip(), _elfcorehdr_option(
        elfcorehdr_range.start)) if part)  # fmt: skip
    cmdline_bytes = cmdline.encode() + b"\0"
    if len(cmdline_bytes) - 1 > header.cmdline_size:
        raise LayoutError(
            f"segment 'cmdline': {len(cmdline_bytes) - 1} bytes, the kernel accepts "
            f"{header.cmdline_size} (cmdline_size)"
        )
    cmdline_range = place("cmdline", len(cmdline_bytes), limit=low_limit)

    payload = inputs.kernel[header.kernel_offset :]
    init_size = header.init_size or 0
    kernel_memsz = _page_up(max(init_size, len(payload)))
    kernel_min = max(_ONE_MIB, header.pref_address or 0)
    kernel_range = place(
        "kernel",
        kernel_memsz,
        align=max(PAGE_SIZE, header.kernel_alignment),
        minimum=kernel_min,
        limit=low_limit,
    )

    (initrd_addr_max,) = struct.unpack_from("<I", inputs.kernel, _INITRD_ADDR_MAX)
    initrd_limit = region.end if above_4g else min(region.end, initrd_addr_max + 1)
    if not inputs.initrd:
        raise LayoutError("segment 'initrd': the initrd is empty")
    initrd_range = place("initrd", len(inputs.initrd), limit=initrd_limit)
    initrd_loaded = Range(initrd_range.start, initrd_range.start + len(inputs.initrd))

    params = boot_params(
        inputs.kernel,
        address=params_range.start,
        e820=e820,
        initrd=initrd_loaded,
        cmdline_address=cmdline_range.start,
        acpi_rsdp=inputs.info.acpi_rsdp if inputs.info is not None else 0,
    )

    segments = [
        KexecSegment("kernel", kernel_range.start, kernel_range.size, payload),
        KexecSegment("initrd", initrd_range.start, initrd_range.size, inputs.initrd),
        KexecSegment("boot_params", params_range.start, params_range.size, params),
        KexecSegment("cmdline", cmdline_range.start, cmdline_range.size, cmdline_bytes),
        KexecSegment("elfcorehdr", elfcorehdr_range.start, elfcorehdr_range.size, elfcorehdr),
    ]
    kernel_entry = kernel_range.start + _KERNEL_ENTRY_64
    purgatory = build_x86_64_purgatory(
        purgatory_range.start,
        segments_for_digest(segments),
        kernel_entry=kernel_entry,
        boot_params=params_range.start,
        backup=backup,
    )
    if backup_range is not None:
        # Filled by the purgatory after its check, so not part of the digest.
        segments.append(KexecSegment("backup", backup_range.start, backup_range.size, b""))
    segments.append(
        KexecSegment("purgatory", purgatory_range.start, purgatory_range.size, purgatory.buffer)
    )
    layout = Layout(
        arch="x86_64",
        entry=purgatory.entry,
        flags=KEXEC_ON_CRASH | KEXEC_ARCH_X86_64,
        crash_region=region,
        segments=tuple(segments),
        details={
            "cmdline": cmdline,
            "kernel_entry": kernel_entry,
            "boot_params": params_range.start,
            "elfcorehdr": elfcorehdr_range.start,
            "backup": None
            if backup is None
            else {"src": backup.src, "dst": backup.dst, "size": backup.size},
            "e820": [entry.to_json() for entry in e820],
            "dump_ranges": [
                {
                    "start": piece.start,
                    "end": piece.end,
                    "offset": offsets.get(piece.start, piece.start),
                }
                for piece in ram
            ],
            "crash_info": None if inputs.info is None else inputs.info.to_json(),
            "kernel_image": {
                "protocol": header.protocol_version,
                "init_size": init_size,
                "kernel_alignment": header.kernel_alignment,
                "pref_address": header.pref_address,
                "xloadflags": header.xloadflags,
            },
        },
    )
    check_layout(layout)
    return layout
