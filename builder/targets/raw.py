"""`raw`: a whole block device, written in makedumpfile's flattened format."""

from __future__ import annotations

import re
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
from builder.units import MiB

DEVICE_PATH = re.compile(r"/dev/[A-Za-z0-9_./:-]+")


@dataclass(frozen=True)
class RawOptions(TargetOptions):
    device: str


class RawTarget(TargetKind):
    name = "raw"
    summary = "a whole block device written in makedumpfile's flattened format"
    rank = 1
    starter = Starter(
        keys="""\
# A whole block device, overwritten from byte 0 with makedumpfile's flattened
# stream; read it back with `kdump-build restore DEVICE vmcore`.
device = "/dev/vdb"
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
            "The /dev path of the block device; its contents are overwritten.",
        ),
    )

    def options(self, values: Mapping[str, Any], check: Check) -> RawOptions:
        device = values["device"]
        if not DEVICE_PATH.fullmatch(device) or "/../" in device:
            check.fail("dump.device", f"{device!r} is not a /dev/ path")
        return RawOptions(device)

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
