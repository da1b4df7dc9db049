"""The arm64 calibration (builder/crashkernel/calibration/aarch64-6.1.json) against its evidence.

bench/calibrate_arm64.py measured, in QEMU virt crash cycles loaded by our
own loader, the smallest `crashkernel=` whose dump validated; these tests
hold the stored constants to the goal on the stored minima, and on the
capture the arm64 recipe builds today.
"""

from __future__ import annotations

import json

import pytest

from builder.crashkernel.fit import recommend
from builder.crashkernel.model import Calibration, CaptureProfile, estimate, load_calibration
from builder.crashkernel.profile import capture_profile
from builder.crashkernel.syntax import parse_crashkernel
from builder.image.pipeline import plan_build
from builder.recipe.parse import load_recipe
from builder.units import MiB
from tests.support.paths import REPO

STORE = REPO / "builder" / "crashkernel" / "calibration" / "aarch64-6.1.json"
RECIPE = REPO / "recipes" / "qemu-arm64.toml"
RECORD = json.loads(STORE.read_text())


def _recommended(profile: CaptureProfile, ram: int, calibration: Calibration) -> int:
    spec, problems = recommend([ram], lambda r: estimate(profile, r, calibration).total)
    assert spec is not None, problems
    return parse_crashkernel(spec).size  # type: ignore[union-attr]


def test_store_is_for_debian_12_arm64_and_measured() -> None:
    assert RECORD["kernel"].startswith("6.1.") and RECORD["kernel"].endswith("-arm64")
    assert load_calibration(STORE) != Calibration()  # measured constants, not the priors
    assert {(m["ram"] // MiB, m["vcpus"], m["capture_cpus"]) for m in RECORD["measurements"]} == {
        (1024, 1, 1), (1024, 2, 1), (4096, 1, 1), (4096, 2, 1), (1024, 2, 2)
    }  # fmt: skip


@pytest.mark.parametrize(
    "measurement", RECORD["measurements"], ids=lambda m: f"{m['ram'] >> 30}G-{m['vcpus']}cpu"
)
def test_recommendation_within_32m_above_each_measured_minimum(
    measurement: dict[str, object],
) -> None:
    profile = CaptureProfile(**RECORD["profiles"][measurement["variant"]])
    minimum = measurement["minimum"]
    assert isinstance(minimum, int)
    recommended = _recommended(profile, measurement["ram"], load_calibration(STORE))  # type: ignore[arg-type]
    assert minimum <= recommended <= minimum + 32 * MiB
    # The evidence: the minimum dumped (twice), the step below did not.
    trials = [trial for trial in measurement["trials"] if "ok" in trial]  # type: ignore[attr-defined]
    at = [trial["ok"] for trial in trials if trial["crashkernel"] == f"{minimum // MiB}M"]
    below = [trial["ok"] for trial in trials if trial["crashkernel"] == f"{minimum // MiB - 8}M"]
    assert at.count(True) >= 2 and below and not any(below)


def test_todays_arm64_capture_is_recommended_at_least_the_measured_minimum() -> None:
    recipe = load_recipe(RECIPE)
    build = plan_build(recipe)
    profile = capture_profile(recipe, build.kernel, build.cmdline, build.members, build.initrd)
    calibration = load_calibration(STORE)
    for measurement in RECORD["measurements"]:
        if measurement["capture_cpus"] == profile.cpus:
            recommended = _recommended(profile, measurement["ram"], calibration)
            assert recommended >= measurement["minimum"], measurement["ram"]
