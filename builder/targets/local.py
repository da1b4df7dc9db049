"""`local`: a file system on a block device of the crashed machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from builder.recipe.parsers import REQUIRED, Setting, string
from builder.targets.base import PATH, Check, HostSelection, TargetKind, TargetOptions

if TYPE_CHECKING:
    from builder.recipe.model import DumpSettings


@dataclass(frozen=True)
class LocalOptions(TargetOptions):
    device: str
    fstype: str
    path: str


class LocalTarget(TargetKind):
    name = "local"
    summary = "a filesystem on a block device"
    settings = (
        Setting(
            "dump.device",
            string,
            REQUIRED,
            "The dump filesystem: `LABEL=...`, `UUID=...` or a /dev path.",
        ),
        Setting("dump.fstype", string, "ext4", "Filesystem type of dump.device."),
        PATH,
    )

    def options(self, values: Mapping[str, Any], check: Check) -> LocalOptions:
        device = values["device"]
        if not (device.startswith(("LABEL=", "UUID=", "/dev/")) and device.split("=", 1)[-1]):
            check.fail("dump.device", f"{device!r} is not LABEL=..., UUID=... or a /dev/ path")
        return LocalOptions(device, values["fstype"], values["path"])

    def config(self, dump: DumpSettings) -> dict[str, str]:
        options = cast(LocalOptions, dump.options)
        return {
            "KDUMP_DEVICE": options.device,
            "KDUMP_FSTYPE": options.fstype,
            "KDUMP_PATH": options.path.rstrip("/"),
        }

    def label(self, dump: DumpSettings) -> str:
        return cast(LocalOptions, dump.options).device

    def host_selection(self, dump: DumpSettings) -> HostSelection:
        options = cast(LocalOptions, dump.options)
        return HostSelection(options.device, options.fstype)
