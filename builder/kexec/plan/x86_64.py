"""The x86_64 part of kdump-load.plan: where a bzImage may go, from its setup header.

`bzimage_placement` is the one place these numbers come from: the Python
planner (builder/kexec/layout/x86_64.py) places with them, and the plan
hands them to kdump-load. Facts from Documentation/arch/x86/boot.rst.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builder.binfmt.kernelimg import BzImageHeader, ImageFormat, parse_kernel_image
from builder.errors import ImageError, LayoutError
from builder.units import PAGE_SIZE, MiB, page_up

__all__ = ["BzImagePlacement", "bzimage_placement", "checked_bzimage", "plan_lines"]

_INITRD_ADDR_MAX = 0x22C  # the highest initrd address the kernel takes
_SETUP_HEADER = 0x1F1
_SETUP_HEADER_END_BYTE = 0x201  # the jump at 0x200 is 2 bytes; its offset byte ends the header


@dataclass(frozen=True)
class BzImagePlacement:
    """Where the kernel and its initrd may be placed, and what is copied into boot_params."""

    payload_offset: int  # the setup code the kernel segment leaves out
    memsz: int  # init_size: it decompresses in place
    align: int
    minimum: int  # max(1 MiB, pref_address): lower, it would move itself out of the region
    above_4g: bool  # XLF_CAN_BE_LOADED_ABOVE_4G
    initrd_limit: int  # exclusive: initrd_addr_max + 1
    cmdline_max: int
    setup_header: tuple[int, int]  # [start, end) copied into the zero page


def checked_bzimage(kernel: bytes, name: str) -> BzImageHeader:
    """The setup header of a bzImage the x86_64 layout can load, or a LayoutError why not."""
    try:
        image = parse_kernel_image(kernel, name)
    except ImageError as error:
        raise LayoutError(str(error)) from None
    header = image.bzimage
    if image.format is not ImageFormat.BZIMAGE or header is None:
        raise LayoutError(f"{name}: is {image.format}, the x86_64 layout needs a bzImage")
    if not header.kernel_64:
        raise LayoutError(f"{name}: no 64-bit entry point (xloadflags bit 0)")
    if not header.relocatable_kernel:
        raise LayoutError(f"{name}: not relocatable; it cannot run in the crash region")
    if header.protocol < 0x20C:
        raise LayoutError(
            f"{name}: boot protocol {header.protocol_version} predates the "
            "64-bit entry fields this layout uses (2.12)"
        )
    return header


def bzimage_placement(kernel: bytes, header: BzImageHeader) -> BzImagePlacement:
    """The placement rules of a parsed bzImage."""
    payload_size = len(kernel) - header.kernel_offset
    (initrd_addr_max,) = struct.unpack_from("<I", kernel, _INITRD_ADDR_MAX)
    return BzImagePlacement(
        payload_offset=header.kernel_offset,
        memsz=page_up(max(header.init_size or 0, payload_size)),
        align=max(PAGE_SIZE, header.kernel_alignment),
        minimum=max(MiB, header.pref_address or 0),
        above_4g=header.loadable_above_4g,
        initrd_limit=initrd_addr_max + 1,
        cmdline_max=header.cmdline_size,
        setup_header=(_SETUP_HEADER, _SETUP_HEADER_END_BYTE + 1 + kernel[_SETUP_HEADER_END_BYTE]),
    )


def plan_lines(kernel: bytes, name: str) -> list[str]:
    """The bzimage-* lines of kdump-load.plan."""
    placement = bzimage_placement(kernel, checked_bzimage(kernel, name))
    start, end = placement.setup_header
    return [
        f"bzimage-payload-offset {placement.payload_offset:#x}",
        f"bzimage-memsz {placement.memsz:#x}",
        f"bzimage-align {placement.align:#x}",
        f"bzimage-min {placement.minimum:#x}",
        f"bzimage-above-4g {int(placement.above_4g):#x}",
        f"bzimage-initrd-limit {placement.initrd_limit:#x}",
        f"bzimage-cmdline-max {placement.cmdline_max:#x}",
        f"bzimage-setup-header {start:#x} {end:#x}",
    ]
