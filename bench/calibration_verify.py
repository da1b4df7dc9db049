"""Re-boot the decisive trials of a stored calibration, and keep their evidence in the store.

For each stored measurement: one crash cycle at the stored minimum (it must
dump) and one a step below (it must fail for the memory reason), on the
capture the recipe builds today. When both agree with the store, their
trials join the measurement's with their evidence (the consoles compressed
into bench/evidence/<store>/, and today's capture profile beside them: the
stored profile, which the constants were fitted to, stays); when one does
not, nothing of that measurement changes and the run says so. The stored
minima and constants never change here: a disagreement calls for a new
calibration (`--write`), not an edit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.calibration_evidence import trial_record
from bench.calibration_search import STEP, Boot, Capture, Config, Trial
from builder.units import MiB


def stored_config(measurement: dict[str, Any]) -> Config:
    return Config(measurement["ram"] // MiB, measurement["vcpus"], measurement["capture_cpus"],
                  measurement["zstd_level"], measurement["target"],
                  measurement.get("nfs_version", "4.2"))  # fmt: skip


def verify_store(
    store: Path,
    build: Callable[[Config], Capture],
    cycle: Boot,
    work: Path,
    limits: tuple[float, float],
    only: Callable[[Config], bool] = lambda _: True,
) -> list[str]:
    """Boot the decisive trials of every measurement `only` picks; rewrite `store` with the
    evidence of those that agree. Returns the disagreements."""
    record = json.loads(store.read_text())
    captures: dict[str, Capture] = {}
    disagreements = []
    for measurement in record["measurements"]:
        config = stored_config(measurement)
        if not only(config):
            continue
        if config.variant not in captures:
            captures[config.variant] = build(config)
        capture = captures[config.variant]
        minimum = measurement["minimum"] // MiB
        sizes = [minimum, minimum - STEP // MiB] if minimum > STEP // MiB else [minimum]
        seen = [cycle(capture, config, size, work, *limits) for size in sizes]
        for trial in seen:
            print(f"  {config.name:<24} {trial.size_mib:>4}M {'ok  ' if trial.ok else 'FAIL'} "
                  f"{trial.seconds:6.1f} s  {trial.outcome}", flush=True)  # fmt: skip
        problem = _disagreement(seen)
        if problem:
            disagreements.append(f"{config.name}: {problem}")
            continue
        profile = dataclasses.asdict(capture.profile) | {
            "dump_target": str(capture.profile.dump_target)
        }
        for trial in seen:
            kept = trial_record(trial, store.stem, work, decisive=True)
            kept["verified"] = "decisive boot of the stored minimum, re-booted with evidence"
            kept["evidence"] = {**kept["evidence"], "profile": profile}  # type: ignore[dict-item]
            measurement["trials"].append(kept)
        store.write_text(json.dumps(record, indent=2) + "\n")
    return disagreements


def _disagreement(seen: list[Trial]) -> str:
    passing, *below = seen
    if not passing.ok:
        return f"the stored minimum {passing.size_mib}M failed: {passing.outcome}"
    for trial in below:
        if trial.ok:
            return f"{trial.size_mib}M, a step below the stored minimum, dumped too"
        if not trial.outcome.startswith("out of memory"):
            return f"{trial.size_mib}M failed without a memory reason: {trial.outcome}"
    return ""
