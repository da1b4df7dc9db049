"""`local`: a file system on a block device of the crashed machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from builder.recipe.dump import (
    DumpSettings,
    HostSelection,
    LocalDumps,
    MemoryPrior,
    RecipeFiles,
    Starter,
    TargetContent,
    TargetKind,
    TargetOptions,
)
from builder.recipe.parsers import REQUIRED, Check, Setting, string
from builder.targets import blockstack
from builder.targets.base import PATH
from builder.units import MiB


@dataclass(frozen=True)
class LocalOptions(TargetOptions):
    device: str
    fstype: str
    path: str
    stack: blockstack.StackOptions = field(default_factory=blockstack.StackOptions)


class LocalTarget(TargetKind):
    name = "local"
    summary = "a filesystem on a block device"
    rank = 0
    starter = Starter(
        keys="""\
# The filesystem the dump is saved to, found by its label (or UUID=..., or a /dev
# path); label one with `e2label /dev/XXX kdump`. Its driver and the filesystem's
# module are in initrd.modules.
device = "LABEL=kdump"
fstype = "ext4"
path = "/"
""",
        modules=("virtio_pci", "virtio_blk", "ext4"),
    )
    default = True
    memory = MemoryPrior(
        4 * MiB,
        calibrated=True,
        basis="dirty page cache and filesystem while writing; every calibration's crash "
        "cycles use this target, so kernel_runtime absorbs what this prior misses",
    )
    settings = (
        Setting(
            "dump.device",
            string,
            REQUIRED,
            "The dump filesystem: `LABEL=...`, `UUID=...` or a /dev path.",
        ),
        Setting("dump.fstype", string, "ext4", "Filesystem type of dump.device."),
        PATH,
        *blockstack.SETTINGS,
    )

    def options(self, values: Mapping[str, Any], check: Check) -> LocalOptions:
        device = values["device"]
        if not (device.startswith(("LABEL=", "UUID=", "/dev/")) and device.split("=", 1)[-1]):
            check.fail("dump.device", f"{device!r} is not LABEL=..., UUID=... or a /dev/ path")
        stack = blockstack.stack_options(values, values["fstype"], check)
        return LocalOptions(device, values["fstype"], values["path"], stack)

    def content(self, dump: DumpSettings, files: RecipeFiles) -> TargetContent:
        stack = cast(LocalOptions, dump.options).stack
        return TargetContent(
            modules=blockstack.stack_modules(stack), programs=blockstack.stack_programs(stack)
        )

    def config(self, dump: DumpSettings) -> dict[str, str]:
        options = cast(LocalOptions, dump.options)
        return {
            "KDUMP_DEVICE": options.device,
            "KDUMP_FSTYPE": options.fstype,
            "KDUMP_PATH": options.path.rstrip("/"),
            **blockstack.stack_config(options.stack),
        }

    def shell_part(self) -> bytes:
        return blockstack.shell_part() + super().shell_part()

    def label(self, dump: DumpSettings) -> str:
        return cast(LocalOptions, dump.options).device

    def host_selection(self, dump: DumpSettings) -> HostSelection:
        options = cast(LocalOptions, dump.options)
        return HostSelection(options.device, options.fstype)

    def local_dumps(self, dump: DumpSettings) -> LocalDumps:
        options = cast(LocalOptions, dump.options)
        return LocalDumps(options.device, options.path)
