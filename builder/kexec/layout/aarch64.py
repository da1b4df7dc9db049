"""aarch64 crash layout: Image, initrd, device tree, purgatory, ELF core header.

Pure planning: bytes, a memory map and the booted DTB in, a `Layout` out.
Facts from Documentation/arch/arm64/booting.rst and the kernel's own crash
loader (arch/arm64/kernel/machine_kexec_file.c, drivers/of/kexec.c). All
segments go in the main (highest) "Crash kernel" range, the only one
kexec_load accepts for a crash image (kernel/kexec_core.c,
sanity_check_segment_list); the placement is the one kexec-tools 2.0.25
chooses on Debian 12 (same addresses, tests/unit/kexec/test_layout_aarch64.py):

- kernel: the Image (a compressed one decompressed, an EFI-stub one as is:
  its header is an Image header) at the range's 2 MiB aligned base plus
  `text_offset`, memsz `image_size`; it needs flags bit 3 (placement
  anywhere) unless that base is the start of RAM;
- initrd right after `image_size`, inside the kernel's 1 GiB aligned 32 GiB
  window (booting.rst);
- the device tree after it (devicetree.py: bootargs, ELF core header,
  usable ranges, initrd, fresh seeds), 8-byte aligned, at most 2 MiB;
- purgatory after that, aligned as its sections ask;
- ELF core header in the last pages of the range: a PT_NOTE per possible
  CPU, vmcoreinfo, the kernel text from /proc/kcore (KASLR's address, no
  kallsyms needed) and System RAM minus every crash range at linear-map
  addresses.

The entry is the purgatory's; it checks the digest of every other segment
and enters the kernel with x0 = DTB, x1..x3 = 0. The capture kernel's
command line gets nothing added: the device tree carries the rest.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from builder.arch import Arch, arch_info
from builder.errors import LayoutError
from builder.kexec.layout import fdtboot
from builder.kexec.layout.core import Layout, LayoutInputs
from builder.kexec.layout.elfcore import elf_core_header
from builder.kexec.memmap import MemoryMap, Range
from builder.kexec.purgatory.aarch64 import ENTRY
from builder.units import GiB, MiB, align_down, align_up, page_up

__all__ = ["ARCH", "COMMAND_LINE_SIZE", "Aarch64Details", "ImageFields", "plan"]

ARCH = Arch.AARCH64
_ARCH_INFO = arch_info(ARCH)
COMMAND_LINE_SIZE = 2048  # arch/arm64/include/uapi/asm/setup.h
_KERNEL_WINDOW = 1 * GiB  # booting.rst: kernel and initrd within one 1 GiB aligned 32 GiB window
_KERNEL_WINDOW_SIZE = 32 * GiB
_DTB_MAX = 2 * MiB  # booting.rst: "must not exceed 2 megabytes in size"
_DTB_ALIGN = 8


@dataclass(frozen=True)
class ImageFields:
    """The Image header fields the placement followed (for layout.json)."""

    text_offset: int
    image_size: int
    flags: int
    page_size: int | None
    placement_anywhere: bool

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Aarch64Details(fdtboot.DeviceTreeDetails):
    """What the aarch64 planner decided: the "details" of its layout.json (dtb: x0)."""

    kernel_image: ImageFields

    def to_json(self) -> dict[str, object]:
        return super().to_json() | {"kernel_image": self.kernel_image.to_json()}


@dataclass(frozen=True)
class _Kernel:
    data: bytes  # the bytes loaded: the Image, decompressed
    fields: ImageFields


def _kernel(inputs: LayoutInputs) -> _Kernel:
    """The arm64 Image in `inputs.kernel`, checked for what a capture kernel must be."""
    data, header = fdtboot.boot_image(inputs, ARCH)
    size = header.image_size or len(data)
    fields = ImageFields(header.text_offset, size, header.flags, header.page_size,
                         header.phys_placement_anywhere)  # fmt: skip
    return _Kernel(data, fields)


def _place_kernel(kernel: _Kernel, region: Range, memory: MemoryMap, name: str) -> Range:
    base = align_up(region.start, _ARCH_INFO.image_alignment)
    ram = memory.system_ram()
    if not kernel.fields.placement_anywhere and (not ram or base != ram[0].start):
        raise LayoutError(
            f"{name}: the Image may only run at the base of RAM (flags bit 3 clear); it cannot "
            f"be a capture kernel in the crash region {region}"
        )
    start = base + kernel.fields.text_offset
    # image_size covers bss too; a file larger than it (never seen) still gets all its bytes.
    return Range(start, start + page_up(max(kernel.fields.image_size, len(kernel.data))))


def _place(
    inputs: LayoutInputs, kernel: _Kernel, elfcorehdr_size: int
) -> fdtboot.DeviceTreePlacement:
    memory = inputs.memory
    region = memory.crash_region()
    kernel_range = _place_kernel(kernel, region, memory, inputs.kernel_name)
    if not inputs.initrd:
        raise LayoutError("segment 'initrd': the initrd is empty")
    initrd = Range(kernel_range.end, kernel_range.end + len(inputs.initrd))
    window_end = align_down(kernel_range.start, _KERNEL_WINDOW) + _KERNEL_WINDOW_SIZE
    if initrd.end > window_end:
        raise LayoutError(
            f"segment 'initrd': {initrd} leaves the kernel's 32 GiB window (ends {window_end:#x})"
        )
    return fdtboot.DeviceTreePlacement(
        kernel=kernel_range,
        initrd=initrd,
        elfcorehdr=fdtboot.last_pages(region, elfcorehdr_size),
        usable=fdtboot.usable_ranges(memory),
    )


def plan(inputs: LayoutInputs) -> Layout:
    """Plan every segment of an aarch64 crash load and check the result.

    The segments, in this order: kernel, initrd, dtb, purgatory, elfcorehdr
    (kexec-tools' order). The DTB gets `inputs.options.seeds` (fresh ones at
    load time, none offline).
    """
    kernel = _kernel(inputs)
    dump = inputs.memory.ram_minus_crash()
    header = elf_core_header(inputs.info, dump, machine=_ARCH_INFO.elf_machine)
    placed = _place(inputs, kernel, len(header))
    cmdline = fdtboot.capture_bootargs(inputs.cmdline, COMMAND_LINE_SIZE)
    dtb = fdtboot.capture_dtb(inputs, "arm64", cmdline, placed, _DTB_MAX)  # booting.rst: 2 MiB
    dtb_segment = fdtboot.page_segment("dtb", align_up(page_up(placed.initrd.end), _DTB_ALIGN), dtb)
    planned = fdtboot.DeviceTreePlan(
        kernel=kernel.data,
        placed=placed,
        dtb=dtb_segment,
        header=header,
        dump=dump,
        cmdline=cmdline,
    )
    details = functools.partial(Aarch64Details, kernel_image=kernel.fields)
    return fdtboot.finish_layout(ENTRY, inputs, planned, details)
