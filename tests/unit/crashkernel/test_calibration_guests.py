"""The device-tree guests' calibrations (builder/crashkernel/calibration/aarch64-6.1.json,
riscv64-6.12.json) against their evidence.

bench/calibrate_devicetree.py measured, in QEMU virt crash cycles loaded by our
own loader, the smallest `crashkernel=` whose dump validated; these tests
hold the stored constants to the goal on the stored minima, and on the
capture each recipe builds today.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from bench.calibrate_devicetree import merge_stored
from bench.calibration_fit import fit_constants
from bench.calibration_search import Config
from bench.calibration_verify import stored_config
from builder.crashkernel.fit import recommend
from builder.crashkernel.model import Calibration, CaptureProfile, estimate, load_calibration
from builder.crashkernel.profile import capture_profile
from builder.crashkernel_syntax import parse_crashkernel
from builder.image.pipeline import plan_build
from builder.recipe.parse import load_recipe
from builder.units import MiB
from tests.support.paths import REPO

STORES = REPO / "builder" / "crashkernel" / "calibration"
# (RAM MiB, main vCPUs, capture nr_cpus) of every guest the bench measures.
GUESTS = {(1024, 1, 1), (1024, 2, 1), (4096, 1, 1), (4096, 2, 1), (1024, 2, 2)}


@dataclass(frozen=True)
class Stored:
    name: str
    recipe: Path
    series: str  # the kernel the store is for: its version's start and end
    flavour: str

    @cached_property
    def record(self) -> dict[str, object]:
        record: dict[str, object] = json.loads((STORES / self.name).read_text())
        return record

    @property
    def measurements(self) -> list[dict[str, Any]]:
        measured: list[dict[str, Any]] = self.record["measurements"]  # type: ignore[assignment]
        return measured


CALIBRATED = (
    Stored("aarch64-6.1.json", REPO / "recipes" / "qemu-arm64.toml", "6.1.", "-arm64"),
    Stored("riscv64-6.12.json", REPO / "recipes" / "qemu-riscv64.toml", "6.12.", "-riscv64"),
)
MEASURED = [(stored, m) for stored in CALIBRATED for m in stored.measurements]
MEASURED_IDS = [
    f"{stored.name.removesuffix('.json')}-{m['ram'] // MiB}M-{m['vcpus']}cpu-{m['capture_cpus']}"
    for stored, m in MEASURED
]


def _recommended(profile: CaptureProfile, ram: int, calibration: Calibration) -> int:
    spec, problems = recommend([ram], lambda r: estimate(profile, r, calibration).total)
    assert spec is not None, problems
    return parse_crashkernel(spec).size  # type: ignore[union-attr]


@pytest.mark.parametrize("stored", CALIBRATED, ids=lambda stored: stored.name)
def test_store_is_for_its_debian_kernel_and_measured(stored: Stored) -> None:
    kernel = stored.record["kernel"]
    assert isinstance(kernel, str)
    assert kernel.startswith(stored.series) and kernel.endswith(stored.flavour)
    assert load_calibration(STORES / stored.name) != Calibration()  # measured, not the priors
    measured = {(m["ram"] // MiB, m["vcpus"], m["capture_cpus"]) for m in stored.measurements}
    assert measured == GUESTS


@pytest.mark.parametrize(
    ("stored", "measurement"),
    MEASURED,
    ids=MEASURED_IDS,
)
def test_recommendation_within_32m_above_each_measured_minimum(
    stored: Stored, measurement: dict[str, Any]
) -> None:
    profiles = stored.record["profiles"]
    profile = CaptureProfile(**profiles[measurement["variant"]])  # type: ignore[index]
    minimum = measurement["minimum"]
    assert isinstance(minimum, int)
    calibration = load_calibration(STORES / stored.name)
    recommended = _recommended(profile, measurement["ram"], calibration)
    assert minimum <= recommended <= minimum + 32 * MiB
    # The evidence: the minimum dumped (twice), the step below failed (a pass there that
    # failed its confirming boot is luck, not a minimum: bench.calibrate_crashkernel.search).
    trials = [trial for trial in measurement["trials"] if "ok" in trial]
    at = [trial["ok"] for trial in trials if trial["crashkernel"] == f"{minimum // MiB}M"]
    below = [trial["ok"] for trial in trials if trial["crashkernel"] == f"{minimum // MiB - 8}M"]
    assert at.count(True) >= 2 and below and not all(below)


@pytest.mark.parametrize("stored", CALIBRATED, ids=lambda stored: stored.name)
def test_todays_capture_is_recommended_at_least_the_measured_minimum(stored: Stored) -> None:
    recipe = load_recipe(stored.recipe)
    build = plan_build(recipe)
    profile = capture_profile(recipe, build.kernel, build.cmdline, build.members, build.initrd)
    calibration = load_calibration(STORES / stored.name)
    for measurement in stored.measurements:
        if measurement["capture_cpus"] == profile.cpus:
            recommended = _recommended(profile, measurement["ram"], calibration)
            assert recommended >= measurement["minimum"], measurement["ram"]


def test_writing_some_guests_keeps_the_others_and_refits_over_all() -> None:
    """`--configs 4G/2 --write` replaces that guest's measurement only (it once wrote a
    store holding the re-measured guest alone)."""
    record: dict[str, Any] = json.loads((STORES / "riscv64-6.12.json").read_text())
    again = Config(4096, 2)
    today = CaptureProfile(
        **{**record["profiles"]["nr_cpus=1,zstd-8"], "initrd_compressed_size": 1}
    )
    profiles, found, kept = merge_stored(record, {"nr_cpus=1,zstd-8": today}, {again: 120 * MiB})
    assert [stored_config(m) for m in record["measurements"]] == list(found)
    assert found[again] == 120 * MiB
    assert kept == {stored_config(m): m for m in record["measurements"]
                    if stored_config(m) != again}  # fmt: skip
    assert profiles["nr_cpus=1,zstd-8"] == today
    assert profiles["nr_cpus=2,zstd-8"] == CaptureProfile(**record["profiles"]["nr_cpus=2,zstd-8"])
    unchanged = merge_stored(record, {}, {again: record["measurements"][3]["minimum"]})
    assert fit_constants(unchanged[0], unchanged[1]) == record["constants"]
