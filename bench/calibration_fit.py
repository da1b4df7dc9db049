"""The calibration's fit and its stored form: the model's free constants from measured minima.

`fit_constants` turns the minima of a campaign (or of a stored file:
`stored_minima`) into `kernel_runtime`, `per_crashed_gib`, `per_cpu` and
`target_nfs`; `calibration_record` is the stored file, every measurement with
its trials and the decisive boots' evidence (bench/calibration_evidence.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.calibration_evidence import decisive_trials, trial_record, unbacked
from bench.calibration_search import PER_CPU_CONFIG, Capture, Config, Trial
from builder.crashkernel.fit import recommend
from builder.crashkernel.model import (
    CALIBRATION_DIR,
    Calibration,
    CaptureProfile,
    estimate,
    kernel_series,
    load_calibration,
)
from builder.units import GiB, MiB

ANCHOR = 256 * MiB  # kdump-utils crashkernel default on x86_64: 2G-64G:256M


def fit_constants(profiles: dict[str, CaptureProfile], minima: dict[Config, int]) -> dict[str, int]:
    """The model's free constants from measured minima (bytes).

    Every term the build or a formula gives (kernel, initrd, bitmaps, priors)
    is taken off each minimum; what is left is the unexplained rest of that
    configuration. per_crashed_gib: how the rest grows from 1 to 4 GiB (at
    least the prior: 8 MiB steps cannot resolve less over 3 GiB); per_cpu: how
    it grows from nr_cpus=1 to 2 (at least the prior, for the same reason); kernel_runtime:
    the largest rest of the local-target guests after those, so the estimate
    without headroom reaches the largest measured minimum (to the byte) and
    the headroom term (one 8 MiB step) is the margin; target_nfs: what the
    nfs guest needs beyond that.
    """
    base = Calibration()  # the priors, never an earlier fit
    fraction = base.struct_page / base.page_size + base.hash_per_mib / MiB
    # The nfs target's cost is measured (its term left out here and fitted below).
    bare = replace(
        base, kernel_runtime=0, headroom=0, per_crashed_gib=0, per_cpu=0, target_costs=(("nfs", 0),)
    )

    def rest(config: Config, minimum: int) -> int:
        others = estimate(profiles[config.variant], config.memory_mib * MiB, bare)
        modelled = others.total - next(t.bytes for t in others.terms if t.name == "memmap")
        # estimate() scales its base by 1 / (1 - fraction): undo that for the base we need.
        # Rounded down, so the estimate without headroom never passes the minimum.
        return math.floor(minimum * (1 - fraction)) - modelled

    rests = {config: rest(config, minimum) for config, minimum in minima.items()}
    slopes = [
        (rests[big] - rests[small]) / ((big.memory_mib - small.memory_mib) / 1024)
        for big in rests
        for small in [dataclasses.replace(big, memory_mib=1024)]
        if big.memory_mib > 1024 and small in rests
    ]
    per_crashed_gib = max([base.per_crashed_gib, *(math.ceil(slope) for slope in slopes)])
    per_cpu = base.per_cpu
    if PER_CPU_CONFIG in rests and Config(1024, 2) in rests:
        per_cpu = max(base.per_cpu, rests[PER_CPU_CONFIG] - rests[Config(1024, 2)])
    unexplained = {
        config: value
        - config.capture_cpus * per_cpu
        - math.ceil(config.memory_mib / 1024 * per_crashed_gib)
        for config, value in rests.items()
    }
    runtime = max(0, *(value for config, value in unexplained.items() if config.target == "local"))
    constants = {
        "kernel_runtime": runtime,
        "per_crashed_gib": per_crashed_gib,
        "per_cpu": per_cpu,
        "headroom": base.headroom,
    }
    nfs = [value - runtime for config, value in unexplained.items() if config.target == "nfs"]
    if nfs:
        # What the nfs capture needs beyond a local one: network stack, RPC, page cache.
        constants["target_nfs"] = max(0, *nfs)
    return constants


def recommendation(profile: CaptureProfile, ram: int, calibration: Calibration) -> int:
    spec, problems = recommend([ram], lambda r: estimate(profile, r, calibration).total)
    if spec is None:
        raise SystemExit(f"no recommendation for {ram}: {problems}")
    return int(spec.removesuffix("M")) * MiB if spec.endswith("M") else int(spec[:-1]) * GiB


# The goal every calibration table checks: the recommendation dumps (it is at least the
# measured minimum) and wastes at most this much.
MARGIN_GOAL = 32 * MiB


@dataclasses.dataclass(frozen=True)
class MarginRow:
    """One guest's line of a calibration table: measured minimum (MiB, None when nothing
    up to 1G dumped), the recommendation (bytes), its margin over the minimum (bytes)."""

    config: Config
    minimum: int | None
    recommended: int

    @property
    def margin(self) -> int | None:
        return None if self.minimum is None else self.recommended - self.minimum * MiB

    @property
    def meets_goal(self) -> bool:
        return self.margin is not None and 0 <= self.margin <= MARGIN_GOAL


def margin_rows(
    profiles: dict[str, CaptureProfile], minima: dict[Config, int | None], calibration: Calibration
) -> list[MarginRow]:
    """The recommendation beside each measured minimum, for the tables of both benches."""
    return [
        MarginRow(config, minimum,
                  recommendation(profiles[config.variant], config.memory_mib * MiB, calibration))
        for config, minimum in minima.items()
    ]  # fmt: skip


def print_table(
    profiles: dict[str, CaptureProfile], minima: dict[Config, int | None], calibration: Calibration
) -> bool:
    print()
    print(
        f"{'configuration':<24} {'measured min':>12} {'recommended':>11} {'margin':>7} "
        f"{'vs anchor 256M':>14}"
    )
    rows = margin_rows(profiles, minima, calibration)
    for row in rows:
        if row.minimum is None or row.margin is None:
            print(f"{row.config.name:<24} {'none <=1G':>12} {row.recommended // MiB:>10}M")
            continue
        print(
            f"{row.config.name:<24} {row.minimum:>11}M {row.recommended // MiB:>10}M "
            f"{row.margin // MiB:>6}M {row.recommended / ANCHOR:>13.2f}x"
        )
    return all(row.meets_goal for row in rows)


def calibration_record(
    regenerate: str,
    what: str,
    qemu_system: str,
    captures: dict[str, Capture],
    constants: dict[str, int],
    found: dict[Config, int],
    trials: dict[Config, list[Trial]],
    work: Path,
    store: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The stored calibration (calibration.json's format): constants, profiles, measurements;
    `extra` keys after "what". The decisive boots' consoles go to bench/evidence/<store>/."""
    kernel = next(iter(captures.values())).kernel_version
    return {
        "regenerate": regenerate,
        "what": what,
        **(extra or {}),
        "kernel": kernel,
        "qemu": subprocess.run(
            [qemu_system, "--version"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0],
        "constants": constants,
        "profiles": profile_records(
            {variant: capture.profile for variant, capture in captures.items()}
        ),
        "measurements": measurement_records(found, trials, store.stem, work),
    }


def profile_records(profiles: dict[str, CaptureProfile]) -> dict[str, object]:
    """Each variant's capture profile as the store keeps it."""
    return {
        variant: dataclasses.asdict(profile) | {"dump_target": str(profile.dump_target)}
        for variant, profile in profiles.items()
    }


def measurement_records(
    found: dict[Config, int], trials: dict[Config, list[Trial]], store: str, work: Path
) -> list[dict[str, object]]:
    """Each guest's measured minimum with its trials, as the store keeps them.

    Refuses (SystemExit) when a minimum's decisive boots lack their evidence.
    """
    problems = [problem for config, minimum in found.items()
                for problem in unbacked(config, minimum // MiB, trials[config], work)]  # fmt: skip
    if problems:
        raise SystemExit("refusing to store measurements without their boots' evidence "
                         "(rerun with --fresh):\n  " + "\n  ".join(problems))  # fmt: skip
    return [
        {
            "ram": config.memory_mib * MiB,
            "vcpus": config.vcpus,
            "capture_cpus": config.capture_cpus,
            "zstd_level": config.zstd_level,
            "target": config.target,
            **({"nfs_version": config.nfs_version} if config.target == "nfs" else {}),
            "variant": config.variant,
            "minimum": value,
            "trials": _trial_records(trials[config], value // MiB, store, work),
        }
        for config, value in found.items()
    ]


def _trial_records(seen: list[Trial], minimum: int, store: str, work: Path) -> list[object]:
    decisive = decisive_trials(minimum, seen)
    return [
        *(trial_record(trial, store, work, any(trial is d for d in decisive)) for trial in seen),
        *({"reserved": trial.reserved_line} for trial in seen[-1:]),
    ]


def stored_minima(record: Mapping[str, Any]) -> dict[Config, int]:
    """A stored file's minima (bytes) by guest."""
    return {
        Config(m["ram"] // MiB, m["vcpus"], m["capture_cpus"], m["zstd_level"], m["target"],
               m.get("nfs_version", "4.2")): m["minimum"]
        for m in record["measurements"]
    }  # fmt: skip


def stored_profiles(record: Mapping[str, Any]) -> dict[str, CaptureProfile]:
    """A stored file's capture profiles by variant."""
    return {variant: CaptureProfile(**profile) for variant, profile in record["profiles"].items()}


def refit(record: Mapping[str, Any]) -> dict[str, int]:
    """The constants `fit_constants` gives for a stored file's own measurements."""
    return fit_constants(stored_profiles(record), stored_minima(record))


def stored_table(path: Path) -> bool:
    """The table of one stored calibration file, from its own runs and constants."""
    stored = json.loads(path.read_text())
    minima = {config: value // MiB for config, value in stored_minima(stored).items()}
    print(f"{path.name}: kernel {stored['kernel']}")
    return print_table(stored_profiles(stored), dict(minima), load_calibration(path))


def calibration_file(arch: str, kernel: str) -> Path:
    """Where the calibration of `arch` and the kernel's series is stored.

    >>> calibration_file("x86_64", "6.12.118+deb13-amd64").name
    'x86_64-6.12.json'
    """
    major, minor = kernel_series(kernel)
    return CALIBRATION_DIR / f"{arch}-{major}.{minor}.json"
