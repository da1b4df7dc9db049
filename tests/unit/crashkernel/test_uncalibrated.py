"""A fit names the terms that are priors, not calibrated: in its one-line verdict (the build
line) and in fit.json's notes. Today that is the dump target's term for a target the
calibration in use never crashed with (raw and ssh everywhere, nfs off x86_64)."""

from __future__ import annotations

import json

import pytest

from builder.crashkernel.fit import fit
from builder.crashkernel.model import CaptureProfile, calibrations, default_calibration
from builder.targets import target_kinds
from builder.units import GiB, MiB

X86_61 = ("x86_64", "6.1.0-57-amd64")
ARM64_61 = ("aarch64", "6.1.0-57-arm64")


def _report(target: str, arch: str, kernel: str) -> tuple[str, list[str]]:
    profile = CaptureProfile(40 * MiB, 3 * MiB, 8 * MiB, dump_target=target)
    report = fit("512M", [1 * GiB, 4 * GiB], profile, arch=arch,
                 calibration=default_calibration(arch, kernel))  # fmt: skip
    notes = report.to_json()["notes"]
    assert isinstance(notes, list)
    return report.reason(), notes


@pytest.mark.parametrize(("target", "where"), [("ssh", X86_61), ("raw", X86_61), ("nfs", ARM64_61)])
def test_an_uncalibrated_target_is_named(target: str, where: tuple[str, str]) -> None:
    reason, notes = _report(target, *where)
    assert reason.endswith(" to spare (uncalibrated: dump_target)"), reason
    assert len(notes) == 1 and notes[0].startswith(
        f"uncalibrated: dump_target: the {target} target's "
    ), notes
    assert "is its prior (" in notes[0]


@pytest.mark.parametrize(("target", "where"), [("local", X86_61), ("nfs", X86_61),
                                               ("local", ARM64_61)])  # fmt: skip
def test_a_calibrated_target_says_nothing(target: str, where: tuple[str, str]) -> None:
    reason, notes = _report(target, *where)
    assert "uncalibrated" not in reason and notes == []


def test_the_prior_says_calibrated_exactly_for_the_targets_a_calibration_crashed_with() -> None:
    measured = {
        str(item["target"])
        for path in calibrations().values()
        for item in json.loads(path.read_text())["measurements"]
    }
    said = {str(kind) for kind in target_kinds() if kind.memory.calibrated}
    assert said == measured == {"local", "nfs"}
