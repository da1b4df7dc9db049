"""What the planners of device-tree architectures share (arm64 and riscv64).

Their capture kernels learn everything from the device tree the layout
writes (devicetree.py), so their planners take the same inputs and record
the same decisions: the booted DTB, the capture command line as `bootargs`,
page-rounded segments, and `DeviceTreeDetails` for layout.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import LayoutError
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.layout.core import KexecSegment, LayoutDetails, LayoutInputs
from builder.kexec.memmap import Range
from builder.units import page_up

__all__ = ["DeviceTreeDetails", "booted_device_tree", "capture_bootargs", "page_segment"]


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
