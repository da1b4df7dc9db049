"""The Image and device-tree part of kdump-load.plan (aarch64, riscv64).

Each architecture's module here gives its numbers as an `ImagePlacement`;
`image_lines` writes them. The placement rules they feed are the layout's
(builder/kexec/layout/aarch64.py, riscv64.py, fdtboot.py); kdump-load's
layout-fdt.c applies them to the live values.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.arch import Arch
from builder.kexec.layout.core import LayoutInputs
from builder.kexec.layout.fdtboot import boot_image
from builder.kexec.memmap import MemoryMap
from builder.units import page_up

__all__ = ["ImagePlacement", "image_lines", "loadable_image"]


@dataclass(frozen=True)
class ImagePlacement:
    """Where an Image, its initrd and the DTB go, relative to the crash region's base."""

    as_file: bool  # the Image is loaded as the file holds it (no decompression on the device)
    anywhere: bool  # flags bit 3 (arm64): any 2 MiB aligned base, not only the start of RAM
    dump_minus_reserved: bool  # the firmware's reserved ranges are left out of the dump
    memsz: int
    text_offset: int
    base_align: int
    initrd_offset: int  # the initrd starts at align_up(kernel + this, initrd_align)
    initrd_align: int
    window: tuple[int, int]  # (alignment, size) the kernel and initrd share; (0, 0): none
    bootargs_max: int  # COMMAND_LINE_SIZE
    dtb_max: int
    dtb_register: str


def loadable_image(kernel: bytes, name: str, arch: Arch) -> tuple[bytes, int, int, bool]:
    """The Image's loaded bytes, text_offset, image_size (0: none) and flags bit 3."""
    data, header = boot_image(
        LayoutInputs(kernel, b"", "", MemoryMap(()), None, kernel_name=name), arch
    )
    return data, header.text_offset, header.image_size, header.phys_placement_anywhere


def image_lines(kernel: bytes, data: bytes, placement: ImagePlacement) -> list[str]:
    """The image-*, initrd-*, bootargs-max, dtb-* lines."""
    p = placement
    flags = (int(p.as_file and data == kernel), int(p.anywhere), int(p.dump_minus_reserved))
    return [
        "image-flags " + " ".join(f"{flag:#x}" for flag in flags),
        f"image-memsz {page_up(p.memsz):#x}",
        f"image-text-offset {p.text_offset:#x}",
        f"image-base-align {p.base_align:#x}",
        f"initrd-offset {p.initrd_offset:#x}",
        f"initrd-align {p.initrd_align:#x}",
        f"initrd-window {p.window[0]:#x} {p.window[1]:#x}",
        f"bootargs-max {p.bootargs_max:#x}",
        f"dtb-max {p.dtb_max:#x}",
        f"dtb-register {p.dtb_register}",
    ]
