"""The riscv64 part of kdump-load.plan: the layout's Image rules as numbers.

Kernel at the crash region's first 2 MiB boundary, the initrd at the next
2 MiB boundary after image_size, the firmware's reserved ranges left out of
the dump (builder/kexec/layout/riscv64.py).
"""

from __future__ import annotations

from builder.arch import Arch
from builder.errors import LayoutError
from builder.kexec.layout import riscv64 as layout
from builder.kexec.plan.devicetree import ImagePlacement, image_lines, loadable_image
from builder.kexec.purgatory.riscv64 import ENTRY
from builder.units import page_up

__all__ = ["plan_lines"]


def plan_lines(kernel: bytes, name: str) -> list[str]:
    data, _text_offset, image_size, _anywhere = loadable_image(kernel, name, Arch.RISCV64)
    if image_size == 0:
        raise LayoutError(f"{name}: image_size is 0 (boot-image-header.rst makes it mandatory)")
    align = layout._PMD_SIZE
    placement = ImagePlacement(
        as_file=True,
        anywhere=True,
        dump_minus_reserved=True,
        memsz=page_up(max(image_size, len(data))),
        text_offset=0,
        base_align=align,
        initrd_offset=image_size,
        initrd_align=align,
        window=(0, 0),
        bootargs_max=layout.COMMAND_LINE_SIZE,
        dtb_max=layout._DTB_MAX,
        dtb_register=ENTRY.dtb_register,
    )
    return image_lines(kernel, data, placement)
