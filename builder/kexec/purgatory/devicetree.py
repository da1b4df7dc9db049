"""The purgatory of a device-tree architecture (arm64, riscv64): the DTB in a register.

Their capture kernels start with the device tree's address in one register
(arm64 x0, riscv64 a1), every other slot of `purgatory_entry_regs` zero but
the kernel's entry point. What differs between them is data: which
register, and what alignment the kernel entry and the DTB need and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from builder.errors import LayoutError
from builder.kexec.purgatory.loader import LoadedPurgatory
from builder.kexec.purgatory.patch import patch_purgatory
from builder.kexec.purgatory.record import PurgatoryRecord
from builder.kexec.purgatory.regions import Segment

__all__ = ["DeviceTreeEntry"]


@dataclass(frozen=True)
class DeviceTreeEntry:
    """How the purgatory of `record` enters the capture kernel with the DTB in a register."""

    record: PurgatoryRecord
    dtb_register: str
    dtb_alignment: int
    dtb_alignment_source: str  # where the DTB's alignment rule comes from, for the message
    kernel_alignment: int
    kernel_misaligned: str  # what a misaligned kernel entry is, for the message

    def registers_block(self, *, kernel_entry: int, dtb: int) -> bytes:
        """The `purgatory_entry_regs` bytes: the DTB register = `dtb`, entry = `kernel_entry`."""
        if kernel_entry % self.kernel_alignment:
            raise LayoutError(f"purgatory: kernel entry {kernel_entry:#x} {self.kernel_misaligned}")
        if dtb % self.dtb_alignment:
            raise LayoutError(
                f"purgatory: DTB address {dtb:#x} is not {self.dtb_alignment}-byte aligned "
                f"({self.dtb_alignment_source})"
            )
        return self.record.registers_block({self.dtb_register: dtb, "entry": kernel_entry})

    def patch(
        self, purgatory: LoadedPurgatory, segments: Sequence[Segment], *, kernel_entry: int,
        dtb: int,
    ) -> LoadedPurgatory:  # fmt: skip
        """Patch a loaded purgatory to verify `segments`, then enter `kernel_entry` with `dtb`."""
        registers = self.registers_block(kernel_entry=kernel_entry, dtb=dtb)
        return patch_purgatory(purgatory, segments, registers=registers)

    def build(
        self, load_address: int, segments: Sequence[Segment], *, kernel_entry: int, dtb: int
    ) -> LoadedPurgatory:
        """Load the shipped purgatory at `load_address` and patch it for `segments`."""
        loaded = self.record.load(load_address)
        return self.patch(loaded, segments, kernel_entry=kernel_entry, dtb=dtb)
