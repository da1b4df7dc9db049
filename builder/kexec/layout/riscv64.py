"""riscv64 crash layout: Image, initrd, device tree, purgatory, ELF core header.

Pure planning: bytes, a memory map and the booted DTB in, a `Layout` out.
Facts from Documentation/arch/riscv/boot.rst and boot-image-header.rst and
the kernel's kexec_load path (arch/riscv/kernel/machine_kexec.c,
kexec_relocate.S; Debian 13's 6.12 has no kexec_file_load). All segments go
in the main (highest) "Crash kernel" range, the only one kexec_load accepts
for a crash image (kernel/kexec_core.c, sanity_check_segment_list):

- kernel: the Image file as it is (Debian's EFI-stub Image: its "MZ" is an
  instruction and its header the Image header) at the range's first 2 MiB
  boundary, memsz `image_size` (boot.rst: "placed at a PMD boundary (2MB
  aligned for rv64)"; `text_offset` is for a loader placing it at the start
  of RAM, the kernel runs from any PMD boundary, and kexec-tools 2.0.32
  ignores it too);
- initrd at the next 2 MiB boundary after `image_size`: the capture kernel
  reserves its image rounded up to PMD_SIZE (arch/riscv/mm/init.c,
  setup_bootmem, with STRICT_KERNEL_RWX) and refuses an initrd inside that
  tail ("overlaps in-use memory region - disabling initrd");
- the device tree after it (devicetree.py: bootargs, ELF core header,
  usable ranges, initrd, fresh seeds), page aligned, at most MAX_FDT_SIZE
  (2 MiB, arch/riscv/include/asm/pgtable.h). machine_kexec_prepare hands the
  capture kernel (in a1) the first segment whose first 40 bytes pass
  fdt_check_header and fails the load without one, so it is a segment of its
  own and no segment before it may start with the FDT magic;
- purgatory after that, aligned as its sections ask; its entry becomes stvec;
- ELF core header in the last pages of the range: a PT_NOTE per possible
  CPU, vmcoreinfo, the kernel text from /proc/kcore and System RAM minus
  every crash range minus what the firmware reserved in the DTB (OpenSBI's
  PMP-protected range: reading it through /proc/vmcore fails, and
  makedumpfile 1.7.6 then crashes), at linear-map addresses. iomem's
  "Reserved" ranges stay: mem_section and the crash notes live in them.

The entry is the purgatory's; it checks the digest of every other segment
and enters the kernel with a0 = the hart id the crashed kernel passed,
a1 = our DTB. The capture command line gets nothing added: the device tree
carries the rest.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from builder.arch import Arch, arch_info
from builder.errors import LayoutError
from builder.kexec.layout import fdtboot
from builder.kexec.layout.core import KexecSegment, Layout, LayoutInputs
from builder.kexec.layout.devicetree import firmware_reserved
from builder.kexec.layout.elfcore import elf_core_header
from builder.kexec.memmap import Range, subtract
from builder.kexec.purgatory.riscv64 import ENTRY
from builder.units import MiB, align_up, page_up

__all__ = ["ARCH", "COMMAND_LINE_SIZE", "ImageFields", "Riscv64Details", "plan"]

ARCH = Arch.RISCV64
_ARCH_INFO = arch_info(ARCH)
COMMAND_LINE_SIZE = 1024  # arch/riscv/include/uapi/asm/setup.h
_PMD_SIZE = _ARCH_INFO.image_alignment  # 2 MiB: where the kernel may start, what it reserves
_DTB_MAX = 2 * MiB  # MAX_FDT_SIZE: the early mapping of the DTB covers no more
_FDT_MAGIC = bytes.fromhex("d00dfeed")


@dataclass(frozen=True)
class ImageFields:
    """The Image header fields the placement followed (for layout.json)."""

    text_offset: int
    image_size: int
    header_version: str | None
    efi_stub: bool

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Riscv64Details(fdtboot.DeviceTreeDetails):
    """What the riscv64 planner decided: the "details" of its layout.json (dtb: a1)."""

    firmware_reserved: tuple[Range, ...]  # left out of the dump ranges
    kernel_image: ImageFields

    def to_json(self) -> dict[str, object]:
        return super().to_json() | {
            "firmware_reserved": [piece.to_json() for piece in self.firmware_reserved],
            "kernel_image": self.kernel_image.to_json(),
        }


@dataclass(frozen=True)
class _Kernel:
    data: bytes  # the Image file as loaded
    fields: ImageFields


def _kernel(inputs: LayoutInputs) -> _Kernel:
    """The riscv64 Image in `inputs.kernel`, checked for what a capture kernel must be."""
    data, header = fdtboot.boot_image(inputs, ARCH)
    if header.image_size == 0:
        raise LayoutError(
            f"{inputs.kernel_name}: image_size is 0 (boot-image-header.rst makes it mandatory)"
        )
    fields = ImageFields(header.text_offset, header.image_size, header.header_version,
                         header.efi_stub)  # fmt: skip
    return _Kernel(data, fields)


def _place(
    inputs: LayoutInputs, kernel: _Kernel, elfcorehdr_size: int
) -> fdtboot.DeviceTreePlacement:
    region = inputs.memory.crash_region()
    start = align_up(region.start, _PMD_SIZE)
    kernel_range = Range(start, start + page_up(max(kernel.fields.image_size, len(kernel.data))))
    if not inputs.initrd:
        raise LayoutError("segment 'initrd': the initrd is empty")
    initrd_start = align_up(start + kernel.fields.image_size, _PMD_SIZE)
    return fdtboot.DeviceTreePlacement(
        kernel=kernel_range,
        initrd=Range(initrd_start, initrd_start + len(inputs.initrd)),
        elfcorehdr=fdtboot.last_pages(region, elfcorehdr_size),
        usable=fdtboot.usable_ranges(inputs.memory),
    )


def _dump_ranges(inputs: LayoutInputs) -> tuple[tuple[Range, ...], tuple[Range, ...]]:
    """The RAM the vmcore describes, and the firmware ranges left out of it."""
    booted, source = fdtboot.booted_device_tree(inputs, ARCH.value)
    reserved = firmware_reserved(booted, source)
    return subtract(inputs.memory.ram_minus_crash(), reserved), reserved


def _device_tree_segment(
    inputs: LayoutInputs, placed: fdtboot.DeviceTreePlacement, cmdline: str, kernel: _Kernel
) -> KexecSegment:
    dtb = fdtboot.capture_dtb(inputs, ARCH.value, cmdline, placed, _DTB_MAX)
    # The kernel takes the first FDT-looking segment as the DTB (machine_kexec_prepare).
    for name, data in (("kernel", kernel.data), ("initrd", inputs.initrd)):
        if data.startswith(_FDT_MAGIC):
            raise LayoutError(
                f"segment {name!r} starts with the FDT magic: the kernel would take it for "
                "the device tree"
            )
    return fdtboot.page_segment("dtb", page_up(placed.initrd.end), dtb)


def plan(inputs: LayoutInputs) -> Layout:
    """Plan every segment of a riscv64 crash load and check the result.

    The segments, in this order: kernel, initrd, dtb, purgatory, elfcorehdr.
    The DTB gets `inputs.options.seeds` (fresh ones at load time, none offline).
    """
    kernel = _kernel(inputs)
    dump, reserved = _dump_ranges(inputs)
    header = elf_core_header(inputs.info, dump, machine=_ARCH_INFO.elf_machine)
    placed = _place(inputs, kernel, len(header))
    cmdline = fdtboot.capture_bootargs(inputs.cmdline, COMMAND_LINE_SIZE)
    dtb = _device_tree_segment(inputs, placed, cmdline, kernel)
    planned = fdtboot.DeviceTreePlan(
        kernel=kernel.data, placed=placed, dtb=dtb, header=header, dump=dump, cmdline=cmdline
    )
    details = functools.partial(
        Riscv64Details, firmware_reserved=reserved, kernel_image=kernel.fields
    )
    return fdtboot.finish_layout(ENTRY, inputs, planned, details)
