"""x86_64 crash layout: bzImage, initrd, boot_params, command line, ELF core header, purgatory.

Pure planning: bytes and a memory map in, a `Layout` out. Facts from
Documentation/arch/x86/boot.rst and zero-page.rst; placement rules from what
the kernel's own loader (arch/x86/kernel/kexec-bzimage64.c, crash.c) does:

- kernel: the bzImage minus its real-mode setup, memsz `init_size`, aligned
  to `kernel_alignment`, at or above max(1 MiB, `pref_address`) (a
  relocatable kernel loaded lower moves itself to LOAD_PHYSICAL_ADDR, which
  is outside the crash region);
- boot_params: the zero page (encoded by zeropage.py) with the capture
  kernel's e820 map, its initrd, command line and acpi_rsdp_addr;
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
from collections.abc import Mapping
from dataclasses import dataclass

from builder.arch import Arch, arch_info
from builder.binfmt.kernelimg import BzImageHeader
from builder.errors import LayoutError
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.hotplug import CrashHotplug, header_room
from builder.kexec.layout.core import (
    KEXEC_ON_CRASH,
    DumpRange,
    KexecSegment,
    Layout,
    LayoutDetails,
    LayoutInputs,
    check_layout,
    check_rewritable_header,
    segments_for_digest,
)
from builder.kexec.layout.elfcore import elf_core_header, elf_core_header_size
from builder.kexec.layout.zeropage import (
    E820_RAM,
    E820_TYPES,
    E820Entry,
    boot_params,
    boot_params_size,
)
from builder.kexec.memmap import HoleAllocator, MemoryMap, Range, subtract
from builder.kexec.plan.x86_64 import BzImagePlacement, bzimage_placement, checked_bzimage
from builder.kexec.purgatory.x86_64 import (
    BackupRegion,
    build_x86_64_purgatory,
    load_x86_64_purgatory,
)
from builder.units import PAGE_SIZE, GiB, KiB, MiB, page_up

__all__ = [
    "ARCH",
    "BACKUP_SIZE",
    "BzImageFields",
    "X86_64Details",
    "capture_e820",
    "plan",
]

ARCH = Arch.X86_64
_ARCH_INFO = arch_info(ARCH)

_ONE_MIB = MiB
_FOUR_GIB = 4 * GiB
_KERNEL_ENTRY_64 = 0x200  # the 64-bit entry, from the protected-mode code start
BACKUP_SIZE = 640 * KiB  # the low RAM that kernels before v5.5 may reuse


@dataclass(frozen=True)
class BzImageFields:
    """The bzImage header fields the kernel's placement followed (for layout.json)."""

    protocol: str
    init_size: int
    kernel_alignment: int
    pref_address: int | None
    xloadflags: int

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "init_size": self.init_size,
            "kernel_alignment": self.kernel_alignment,
            "pref_address": self.pref_address,
            "xloadflags": self.xloadflags,
        }


@dataclass(frozen=True, kw_only=True)
class X86_64Details(LayoutDetails):
    """What the x86_64 planner decided: the "details" of its layout.json."""

    kernel_entry: int  # the 64-bit entry the purgatory jumps to
    boot_params: int  # address of the zero page (rsi at the jump)
    elfcorehdr: int
    backup: BackupRegion | None
    e820: tuple[E820Entry, ...]
    dump_ranges: tuple[DumpRange, ...]
    crash_info: CrashInfo | None
    kernel_image: BzImageFields
    crash_hotplug: CrashHotplug | None = None  # the kernel rewrites the ELF core header

    def to_json(self) -> dict[str, object]:
        backup = self.backup
        # Only with crash hotplug, so a layout without it keeps its layout.json.
        rewrite = self.crash_hotplug
        hotplug = {} if rewrite is None else {"crash_hotplug": rewrite.to_json()}
        return {
            "cmdline": self.cmdline,
            "kernel_entry": self.kernel_entry,
            "boot_params": self.boot_params,
            "elfcorehdr": self.elfcorehdr,
            "backup": None
            if backup is None
            else {"src": backup.src, "dst": backup.dst, "size": backup.size},
            "e820": [entry.to_json() for entry in self.e820],
            "dump_ranges": [piece.to_json() for piece in self.dump_ranges],
            "crash_info": None if self.crash_info is None else self.crash_info.to_json(),
            "kernel_image": self.kernel_image.to_json(),
            **hotplug,
        }


def capture_e820(
    memory: MemoryMap, excluded: list[Range], *, low_ram: bool = True
) -> list[E820Entry]:
    """The capture kernel's memory map, sorted.

    RAM: the System RAM below 1 MiB (with `low_ram`), the low crash range, the
    main crash range minus `excluded` (ELF core header, backup copy) and the
    `crashkernel=,cma` ranges.
    Firmware: ACPI tables, ACPI NVS and reserved ranges as the main kernel saw them.
    """
    entries: list[E820Entry] = []
    if low_ram:
        for piece in memory.system_ram():
            if piece.start < _ONE_MIB:
                entries.append(E820Entry(piece.start, min(piece.end, _ONE_MIB), E820_RAM))
    for region in memory.firmware_regions():
        entries.append(E820Entry(region.range.start, region.range.end, E820_TYPES[region.kind]))
    low = memory.crash_low_region()
    if low is not None:
        entries.append(E820Entry(low.start, low.end, E820_RAM))
    for piece in subtract([memory.crash_region()], excluded):
        entries.append(E820Entry(piece.start, piece.end, E820_RAM))
    # The `,cma` ranges: RAM for the capture kernel beside its fixed region (the
    # kernel's own loader does the same, arch/x86/kernel/crash.c).
    for piece in memory.crash_cma:
        entries.append(E820Entry(piece.start, piece.end, E820_RAM))
    entries.sort(key=lambda entry: (entry.start, entry.end))
    for lower, upper in itertools.pairwise(entries):
        if upper.start < lower.end:
            raise LayoutError(
                f"capture memory map: {upper.start:#x}-{upper.end:#x} (type {upper.type}) "
                f"overlaps {lower.start:#x}-{lower.end:#x} (type {lower.type})"
            )
    return entries


def _elfcorehdr_option(address: int) -> str:
    # The kernel parses elfcorehdr= with memparse: a K suffix keeps it short.
    return f"elfcorehdr={address >> 10}K" if address % 1024 == 0 else f"elfcorehdr={address:#x}"


class _Placer:
    """Places segments top-down in the crash region; an error names the segment."""

    def __init__(self, region: Range, placement: BzImagePlacement) -> None:
        self.region = region
        self.allocator = HoleAllocator(region)
        # Without XLF_CAN_BE_LOADED_ABOVE_4G everything the kernel reads stays below 4 GiB.
        above_4g = placement.above_4g
        self.low_limit = region.end if above_4g else min(region.end, _FOUR_GIB)

    def place(self, name: str, size: int, *, align: int = PAGE_SIZE, limit: int | None = None,
              minimum: int = 0) -> Range:  # fmt: skip
        try:
            return self.allocator.allocate(
                page_up(size),
                align=align,
                max_addr=self.low_limit if limit is None else limit,
                min_addr=minimum,
            )
        except LayoutError as error:
            raise LayoutError(f"segment {name!r}: {error}") from None


@dataclass(frozen=True)
class _Dump:
    """The RAM the ELF core header describes, and the backup copy if there is one."""

    ram: tuple[Range, ...]
    offsets: Mapping[int, int]  # start -> where its bytes are read (only moved ranges)
    backup: BackupRegion | None
    backup_range: Range | None

    def excluded(self, elfcorehdr: Range) -> list[Range]:
        """What the capture kernel must not use as RAM."""
        return [elfcorehdr] + ([self.backup_range] if self.backup_range is not None else [])

    def ranges(self) -> tuple[DumpRange, ...]:
        return tuple(DumpRange(piece.start, piece.end, self.offsets.get(piece.start, piece.start))
                     for piece in self.ram)  # fmt: skip


@dataclass(frozen=True)
class _Placement:
    """Where every segment goes, and what was decided to get there."""

    dump: _Dump
    elfcorehdr: Range
    purgatory: Range
    e820: tuple[E820Entry, ...]
    boot_params: Range
    cmdline: str  # with elfcorehdr=, without the NUL
    cmdline_range: Range
    kernel: Range
    initrd: Range


def _plan_dump(memory: MemoryMap, placer: _Placer, backup: bool) -> _Dump:
    ram = memory.ram_minus_crash()
    if not backup:
        # The low 1 MiB is reserved by the main kernel since v5.5 and given to the
        # capture kernel as RAM; the dump leaves it out, as the kernel's loader does.
        return _Dump(subtract(ram, [Range(0, _ONE_MIB)]), {}, None, None)
    backup_range = placer.place("backup", BACKUP_SIZE)
    ram = subtract(ram, [Range(BACKUP_SIZE, _ONE_MIB)])
    offsets = {piece.start: backup_range.start + piece.start
               for piece in ram if piece.end <= BACKUP_SIZE}  # fmt: skip
    return _Dump(ram, offsets, BackupRegion(0, backup_range.start, BACKUP_SIZE), backup_range)


def _elfcorehdr_size(inputs: LayoutInputs, ram: tuple[Range, ...]) -> int:
    """Our header's size; with crash hotplug, room for any header the kernel may write."""
    size = elf_core_header_size(inputs.info, ram)
    hotplug = inputs.options.crash_hotplug
    return size if hotplug is None else max(size, header_room(hotplug, len(ram)))


def _place_purgatory(placer: _Placer) -> Range:
    probe = load_x86_64_purgatory(0)
    return placer.place("purgatory", probe.memsz, align=max(PAGE_SIZE, probe.alignment))


def _capture_cmdline(cmdline: str, elfcorehdr: int, placement: BzImagePlacement) -> str:
    parts = (cmdline.strip(), _elfcorehdr_option(elfcorehdr))
    text = " ".join(part for part in parts if part)
    length = len(text.encode())
    if length > placement.cmdline_max:
        raise LayoutError(
            f"segment 'cmdline': {length} bytes, the kernel accepts "
            f"{placement.cmdline_max} (cmdline_size)"
        )
    return text


def _place_kernel(placement: BzImagePlacement, placer: _Placer) -> Range:
    # The kernel decompresses itself in place: it needs init_size, not its file size.
    return placer.place("kernel", placement.memsz, align=placement.align,
                        minimum=placement.minimum)  # fmt: skip


def _place_initrd(inputs: LayoutInputs, placement: BzImagePlacement, placer: _Placer) -> Range:
    region = placer.region
    limit = region.end if placement.above_4g else min(region.end, placement.initrd_limit)
    if not inputs.initrd:
        raise LayoutError("segment 'initrd': the initrd is empty")
    return placer.place("initrd", len(inputs.initrd), limit=limit)


def _place_segments(inputs: LayoutInputs, placement: BzImagePlacement) -> _Placement:
    """Place every segment, in the order kexec-tools does (the order decides the addresses).

    kdump-load (builder/kexec/loader/layout-x86_64.c) places in the same order.
    """
    memory = inputs.memory
    placer = _Placer(memory.crash_region(), placement)
    dump = _plan_dump(memory, placer, inputs.options.backup)
    elfcorehdr = placer.place("elfcorehdr", _elfcorehdr_size(inputs, dump.ram))
    purgatory = _place_purgatory(placer)
    e820 = tuple(capture_e820(memory, dump.excluded(elfcorehdr)))
    params = placer.place("boot_params", boot_params_size(len(e820)))
    cmdline = _capture_cmdline(inputs.cmdline, elfcorehdr.start, placement)
    cmdline_range = placer.place("cmdline", len(cmdline.encode()) + 1)
    kernel = _place_kernel(placement, placer)
    initrd = _place_initrd(inputs, placement, placer)
    return _Placement(dump, elfcorehdr, purgatory, e820, params, cmdline, cmdline_range,
                      kernel, initrd)  # fmt: skip


def _payload_segments(
    inputs: LayoutInputs, placement: BzImagePlacement, placed: _Placement
) -> list[KexecSegment]:
    """Every segment but the purgatory, whose digest covers them."""
    initrd_loaded = Range(placed.initrd.start, placed.initrd.start + len(inputs.initrd))
    params = boot_params(
        inputs.kernel,
        address=placed.boot_params.start,
        e820=list(placed.e820),
        initrd=initrd_loaded,
        cmdline_address=placed.cmdline_range.start,
        acpi_rsdp=inputs.info.acpi_rsdp if inputs.info is not None else 0,
    )
    elfcorehdr = elf_core_header(inputs.info, placed.dump.ram, machine=_ARCH_INFO.elf_machine,
                                 ram_file_offsets=dict(placed.dump.offsets))  # fmt: skip
    contents = (
        ("kernel", placed.kernel, inputs.kernel[placement.payload_offset :]),
        ("initrd", placed.initrd, inputs.initrd),
        ("boot_params", placed.boot_params, params),
        ("cmdline", placed.cmdline_range, placed.cmdline.encode() + b"\0"),
        ("elfcorehdr", placed.elfcorehdr, elfcorehdr),
    )
    return [KexecSegment(name, where.start, where.size, data) for name, where, data in contents]


def _details(inputs: LayoutInputs, header: BzImageHeader, placed: _Placement) -> X86_64Details:
    return X86_64Details(
        cmdline=placed.cmdline,
        kernel_entry=placed.kernel.start + _KERNEL_ENTRY_64,
        boot_params=placed.boot_params.start,
        elfcorehdr=placed.elfcorehdr.start,
        backup=placed.dump.backup,
        e820=placed.e820,
        dump_ranges=placed.dump.ranges(),
        crash_info=inputs.info,
        kernel_image=BzImageFields(
            protocol=header.protocol_version,
            init_size=header.init_size or 0,
            kernel_alignment=header.kernel_alignment,
            pref_address=header.pref_address,
            xloadflags=header.xloadflags,
        ),
        crash_hotplug=inputs.options.crash_hotplug,
    )


def plan(inputs: LayoutInputs) -> Layout:
    """Plan every segment of an x86_64 crash load and check the result.

    The segments, in this order: kernel, initrd, boot_params, cmdline,
    elfcorehdr, backup (only with `LayoutOptions.backup`), purgatory. The
    entry is the purgatory's; it jumps to `X86_64Details.kernel_entry`.
    With `LayoutOptions.crash_hotplug` the kernel may rewrite elfcorehdr: it
    is sized for that, left out of the purgatory's digest, and the flags ask
    for it (kexec.hotplug); everything else is the same.
    """
    hotplug = inputs.options.crash_hotplug
    header = checked_bzimage(inputs.kernel, inputs.kernel_name)
    placement = bzimage_placement(inputs.kernel, header)
    placed = _place_segments(inputs, placement)
    details = _details(inputs, header, placed)
    segments = _payload_segments(inputs, placement, placed)
    backup_range = placed.dump.backup_range
    if backup_range is not None:
        # In the digest, as the zeros it holds until the purgatory's check: the kernel
        # zero-fills memsz past bufsz when it loads a crash segment (kernel/kexec_core.c,
        # kimage_load_crash_segment), and purgatory.c copies low memory into it only
        # after the check passed. A stray write into the region is caught like one into
        # any other segment, as kexec-tools' purgatory does (it hashes every segment).
        segments.append(KexecSegment("backup", backup_range.start, backup_range.size, b""))
    purgatory = build_x86_64_purgatory(
        placed.purgatory.start,
        segments_for_digest(segments, rewritten=None if hotplug is None else "elfcorehdr"),
        kernel_entry=details.kernel_entry,
        boot_params=placed.boot_params.start,
        backup=placed.dump.backup,
    )
    segments.append(KexecSegment("purgatory", placed.purgatory.start, placed.purgatory.size,
                                 purgatory.buffer))  # fmt: skip
    layout = Layout(
        arch=ARCH,
        entry=purgatory.entry,
        flags=KEXEC_ON_CRASH | _ARCH_INFO.kexec_arch | (hotplug.flag if hotplug else 0),
        crash_region=inputs.memory.crash_region(),
        segments=tuple(segments),
        details=details,
    )
    check_layout(layout)
    if hotplug is not None:
        check_rewritable_header(layout, "elfcorehdr")
    return layout
