"""What the planners of device-tree architectures share (arm64 and riscv64).

Their capture kernels learn everything from the device tree the layout
writes (devicetree.py), so their planners take the same inputs and record
the same decisions: an `Image` (`boot_image`), the booted DTB, the capture
command line as `bootargs`, page-rounded segments, and `DeviceTreeDetails`
for layout.json. Each planner places the kernel, the initrd and the DTB by
its architecture's rules; `finish_layout` does the rest alike: the
purgatory after the DTB, patched with the digest of every other segment,
and the kernel's checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from builder.arch import Arch, arch_info
from builder.binfmt.kernelimg import BootImageHeader, ImageFormat, parse_kernel_image
from builder.errors import ImageError, LayoutError
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.layout.core import (
    KEXEC_ON_CRASH,
    KexecSegment,
    Layout,
    LayoutDetails,
    LayoutInputs,
    check_layout,
    segments_for_digest,
)
from builder.kexec.layout.devicetree import capture_device_tree
from builder.kexec.memmap import MemoryMap, Range
from builder.kexec.purgatory.devicetree import DeviceTreeEntry
from builder.units import PAGE_SIZE, align_up, page_up

__all__ = [
    "DeviceTreeDetails",
    "DeviceTreePlacement",
    "DeviceTreePlan",
    "boot_image",
    "booted_device_tree",
    "capture_bootargs",
    "capture_dtb",
    "finish_layout",
    "last_pages",
    "page_segment",
    "place_purgatory",
    "usable_ranges",
]


@dataclass(frozen=True, kw_only=True)
class DeviceTreeDetails(LayoutDetails):
    """What a device-tree planner decided: the "details" of its layout.json."""

    kernel_entry: int  # the Image's load address: the purgatory jumps there
    dtb: int  # the DTB's address, handed to the kernel in a register
    elfcorehdr: Range  # the header's own bytes (linux,elfcorehdr)
    usable: tuple[Range, ...]  # linux,usable-memory-range, main range first
    initrd: Range  # linux,initrd-start/-end
    dump_ranges: tuple[Range, ...]  # the ELF core header's RAM PT_LOADs
    seeded: bool  # fresh kaslr-seed and rng-seed in the device tree
    crash_info: CrashInfo | None

    def to_json(self) -> dict[str, object]:
        return {
            "cmdline": self.cmdline,
            "kernel_entry": self.kernel_entry,
            "dtb": self.dtb,
            "elfcorehdr": self.elfcorehdr.to_json(),
            "usable_memory": [piece.to_json() for piece in self.usable],
            "initrd": self.initrd.to_json(),
            "dump_ranges": [piece.to_json() for piece in self.dump_ranges],
            "seeded": self.seeded,
            "crash_info": None if self.crash_info is None else self.crash_info.to_json(),
        }


def boot_image(inputs: LayoutInputs, arch: Arch) -> tuple[bytes, BootImageHeader]:
    """The bytes to load of the `arch` Image in `inputs.kernel` (a compressed one
    decompressed), and its header; anything else is a LayoutError.

    >>> boot_image(LayoutInputs(b"MZ", b"", "", None, None, kernel_name="vmlinuz"), Arch.AARCH64)
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: vmlinuz: ...
    """
    name = inputs.kernel_name
    try:
        image = parse_kernel_image(inputs.kernel, name).kernel
    except ImageError as error:
        raise LayoutError(str(error)) from None
    header = image.boot_header
    if image.format is not ImageFormat.IMAGE or image.arch is not arch or header is None:
        wanted = arch_info(arch).debian
        article = "an" if wanted[0] in "aeiou" else "a"
        raise LayoutError(
            f"{name}: is a {image.arch} {image.format}, the layout needs {article} {wanted} Image"
        )
    return image.loadable, header


def booted_device_tree(inputs: LayoutInputs, layout_name: str) -> tuple[bytes, str]:
    """The device tree the main kernel booted with, and where it came from.

    >>> booted_device_tree(LayoutInputs(b"", b"", "", None, None), "test")
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: the test layout needs the device tree the main kernel booted ...
    """
    firmware = inputs.firmware
    if firmware is None or firmware.device_tree is None:
        raise LayoutError(
            f"the {layout_name} layout needs the device tree the main kernel booted with "
            "(/sys/firmware/fdt; `kdump-build capture-sysfs` saves it, `layout --sysfs` reads it)"
        )
    return firmware.device_tree, firmware.device_tree_source


def capture_bootargs(cmdline: str, command_line_size: int) -> str:
    """The capture command line as /chosen's bootargs, checked against COMMAND_LINE_SIZE.

    >>> capture_bootargs(" console=ttyS0 ", 16)
    'console=ttyS0'
    >>> capture_bootargs("x" * 16, 16)
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: bootargs: 16 bytes, the kernel keeps 15
    """
    text = cmdline.strip()
    if len(text.encode()) >= command_line_size:
        raise LayoutError(
            f"bootargs: {len(text.encode())} bytes, the kernel keeps {command_line_size - 1}"
        )
    return text


def page_segment(name: str, start: int, data: bytes) -> KexecSegment:
    """A segment of `data` at `start`, its memsz rounded up to whole pages.

    >>> page_segment("dtb", 0x1000, b"x").memsz
    4096
    """
    return KexecSegment(name, start, page_up(len(data)), data)


def usable_ranges(memory: MemoryMap) -> tuple[Range, ...]:
    """linux,usable-memory-range: the crash region the segments are in first (the capture
    kernel caps its memory to the first range, drivers/of/fdt.c), then every other one."""
    if memory.crash_cma:
        # Only kernels with the ,cma support of the device-tree architectures read more
        # than two ranges here; until a boot shows it, refuse rather than load a capture
        # that would have only its fixed part.
        raise LayoutError(
            f"{len(memory.crash_cma)} crashkernel=,cma range(s): kdump-build gives them to "
            "the capture kernel through an e820 map only (boot without crashkernel=,cma here)"
        )
    region = memory.crash_region()
    return (region, *(piece for piece in memory.crash_ranges() if piece != region))


def last_pages(region: Range, size: int) -> Range:
    """`size` bytes at the start of the last whole pages of `region` (the ELF core header's).

    >>> last_pages(Range(0x1000, 0x5000), 0x158)
    Range(start=16384, end=16728)
    """
    start = region.end - page_up(size)
    return Range(start, start + size)


@dataclass(frozen=True, kw_only=True)
class DeviceTreePlacement:
    """Where the kernel goes, and what the capture kernel's /chosen points at."""

    kernel: Range  # initrd and elfcorehdr: their own bytes; their segments are page rounded
    elfcorehdr: Range
    usable: tuple[Range, ...]
    initrd: Range


def capture_dtb(
    inputs: LayoutInputs, layout_name: str, cmdline: str, placed: DeviceTreePlacement, limit: int
) -> bytes:
    """The booted DTB with /chosen edited for the capture kernel, at most `limit` bytes."""
    booted, source = booted_device_tree(inputs, layout_name)
    dtb = capture_device_tree(
        booted,
        source=source,
        bootargs=cmdline,
        elfcorehdr=placed.elfcorehdr,
        usable=placed.usable,
        initrd=placed.initrd,
        seeds=inputs.options.seeds,
    )
    if len(dtb) > limit:
        raise LayoutError(f"segment 'dtb': {len(dtb)} bytes, the kernel maps at most {limit}")
    return dtb


def place_purgatory(after: int, alignment: int, memsz: int, below: int, region: Range) -> int:
    """The purgatory's address: after `after`, aligned, ending at or below `below`.

    >>> hex(place_purgatory(0x1800, 16, 0x1810, 0x10000, Range(0, 0x10000)))
    '0x2000'
    >>> place_purgatory(0xF000, 16, 0x1810, 0x10000, Range(0, 0x10000))
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: the crash region ... is too small: kernel, initrd, dtb and ...
    """
    start = align_up(page_up(after), max(PAGE_SIZE, alignment))
    end = start + page_up(memsz)
    if end > below:
        raise LayoutError(
            f"the crash region {region} is too small: kernel, initrd, dtb and purgatory end at "
            f"{end:#x}, the ELF core header starts at {below:#x}"
        )
    return start


@dataclass(frozen=True, kw_only=True)
class DeviceTreePlan:
    """What an architecture's planner decided; `finish_layout` does the rest alike."""

    kernel: bytes = field(repr=False)  # the bytes loaded at `placed.kernel`
    placed: DeviceTreePlacement
    dtb: KexecSegment  # the capture device tree, placed
    header: bytes = field(repr=False)  # the ELF core header, loaded at `placed.elfcorehdr`
    dump: tuple[Range, ...]  # the RAM ranges the header describes
    cmdline: str  # the capture command line, as bootargs


def finish_layout(
    entry: DeviceTreeEntry,
    inputs: LayoutInputs,
    planned: DeviceTreePlan,
    details: Callable[..., DeviceTreeDetails],
) -> Layout:
    """The checked layout: kernel, initrd, dtb, purgatory, elfcorehdr (kexec-tools' order).

    The purgatory goes after the DTB, patched to verify every other segment
    and to enter the kernel with the DTB's address; the entry is the
    purgatory's. `details` makes the architecture's layout.json details
    from what every device-tree planner records (its own fields bound).
    """
    placed, dtb, region = planned.placed, planned.dtb, inputs.memory.crash_region()
    verified = [
        KexecSegment("kernel", placed.kernel.start, placed.kernel.size, planned.kernel),
        page_segment("initrd", placed.initrd.start, inputs.initrd),
        dtb,
        page_segment("elfcorehdr", placed.elfcorehdr.start, planned.header),
    ]
    probe = entry.record.load(0)
    start = place_purgatory(dtb.mem + dtb.bufsz, probe.alignment, probe.memsz,
                            placed.elfcorehdr.start, region)  # fmt: skip
    purgatory = entry.build(
        start, segments_for_digest(verified), kernel_entry=placed.kernel.start, dtb=dtb.mem
    )
    segments = (*verified[:3],
                KexecSegment("purgatory", start, page_up(purgatory.memsz), purgatory.buffer),
                verified[3])  # fmt: skip
    decided = details(
        cmdline=planned.cmdline, kernel_entry=placed.kernel.start, dtb=dtb.mem,
        elfcorehdr=placed.elfcorehdr, usable=placed.usable, initrd=placed.initrd,
        dump_ranges=planned.dump, seeded=inputs.options.seeds is not None,
        crash_info=inputs.info,
    )  # fmt: skip
    arch = entry.record.arch
    flags = KEXEC_ON_CRASH | arch_info(arch).kexec_arch
    layout = Layout(arch, purgatory.entry, flags, region, segments, decided)
    check_layout(layout)
    return layout
