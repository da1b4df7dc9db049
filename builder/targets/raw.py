"""`raw`: a whole block device, written in makedumpfile's flattened format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from builder.recipe.choices import Collector
from builder.recipe.dump import (
    DumpSettings,
    HostSelection,
    MemoryPrior,
    Starter,
    TargetKind,
    TargetOptions,
)
from builder.recipe.parsers import REQUIRED, Check, Setting, string
from builder.targets.rawid import KINDS, parse_identity
from builder.units import MiB


@dataclass(frozen=True)
class RawOptions(TargetOptions):
    device: str


class RawTarget(TargetKind):
    name = "raw"
    summary = "a whole block device written in makedumpfile's flattened format"
    rank = 1
    starter = Starter(
        keys="""\
# A whole disk, overwritten from byte 0 with makedumpfile's flattened stream; read
# it back with `kdump-build restore DEVICE vmcore`. Named by its serial number
# (cat /sys/block/vdb/serial; QEMU: -drive ...,serial=kdump-raw) or WWN=..., never
# by a kernel name such as /dev/vdb, which the capture kernel may give another disk.
device = "SERIAL=kdump-raw"
""",
        modules=("virtio_pci", "virtio_blk"),
    )
    memory = MemoryPrior(
        2 * MiB,
        calibrated=False,
        basis="a guess: no filesystem, only the block layer's buffers for the stream",
    )
    settings = (
        Setting(
            "dump.device",
            string,
            REQUIRED,
            f"The disk, by what it carries: {KINDS} (from /sys/block/<disk>/serial, "
            "device/serial or device/wwid). Its contents are overwritten; the capture "
            "refuses a disk that holds a filesystem, partition table, LUKS, LVM, RAID "
            "or swap signature (an earlier raw dump is overwritten).",
        ),
    )

    def options(self, values: Mapping[str, Any], check: Check) -> RawOptions:
        try:
            identity = parse_identity(values["device"])
        except ValueError as error:
            check.fail("dump.device", str(error))
        return RawOptions(str(identity))

    def check(self, dump: DumpSettings, check: Check) -> None:
        if dump.collector is not Collector.MAKEDUMPFILE:
            check.fail(
                "dump.collector",
                "a raw target needs makedumpfile: its flattened stream carries its own length",
            )

    def config(self, dump: DumpSettings) -> dict[str, str]:
        return {"KDUMP_DEVICE": cast(RawOptions, dump.options).device}

    def label(self, dump: DumpSettings) -> str:
        return cast(RawOptions, dump.options).device

    def host_selection(self, dump: DumpSettings) -> HostSelection:
        return HostSelection(cast(RawOptions, dump.options).device)
