"""The aarch64 part of kdump-load.plan: the layout's Image rules as numbers.

Kernel at the crash region's 2 MiB aligned base plus text_offset, memsz
image_size; the initrd right after it, within the kernel's 1 GiB aligned
32 GiB window (builder/kexec/layout/aarch64.py).
"""

from __future__ import annotations

from builder.arch import Arch, arch_info
from builder.kexec.layout import aarch64 as layout
from builder.kexec.plan.devicetree import ImagePlacement, image_lines, loadable_image
from builder.kexec.purgatory.aarch64 import ENTRY
from builder.units import page_up

__all__ = ["plan_lines"]


def plan_lines(kernel: bytes, name: str) -> list[str]:
    data, text_offset, image_size, anywhere = loadable_image(kernel, name, Arch.AARCH64)
    memsz = page_up(max(image_size or len(data), len(data)))
    placement = ImagePlacement(
        as_file=True,
        anywhere=anywhere,
        dump_minus_reserved=False,
        memsz=memsz,
        text_offset=text_offset,
        base_align=arch_info(Arch.AARCH64).image_alignment,
        initrd_offset=memsz,
        initrd_align=1,
        window=(layout._KERNEL_WINDOW, layout._KERNEL_WINDOW_SIZE),
        bootargs_max=layout.COMMAND_LINE_SIZE,
        dtb_max=layout._DTB_MAX,
        dtb_register=ENTRY.dtb_register,
    )
    return image_lines(kernel, data, placement)
