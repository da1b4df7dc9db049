"""`toy`: a test-only dump target that saves the stream into a tmpfs directory.

Lives in tests/: tests/unit/targets/test_toy_target.py copies builder/ and
drops this file and toy.sh into the copy's builder/targets/, which is all that
adding a dump target takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from builder.recipe.dump import DumpSettings, HostSelection, MemoryPrior, TargetKind, TargetOptions
from builder.recipe.parsers import Check, Setting, absolute_path
from builder.units import MiB


@dataclass(frozen=True)
class ToyOptions(TargetOptions):
    directory: str


class ToyTarget(TargetKind):
    name = "toy"
    summary = "a tmpfs directory of the capture kernel (a test target)"
    rank = 99
    memory = MemoryPrior(1 * MiB, calibrated=False, basis="a guess for a test target")
    settings = (Setting("dump.directory", absolute_path, "/run/toy", "Where the tmpfs goes."),)

    def options(self, values: Mapping[str, Any], check: Check) -> ToyOptions:
        if values["directory"] == "/":
            check.fail("dump.directory", "not the root directory")
        return ToyOptions(values["directory"])

    def config(self, dump: DumpSettings) -> dict[str, str]:
        return {"KDUMP_TOY_DIRECTORY": cast(ToyOptions, dump.options).directory}

    def label(self, dump: DumpSettings) -> str:
        return cast(ToyOptions, dump.options).directory

    def host_selection(self, dump: DumpSettings) -> HostSelection:
        return HostSelection(None)
