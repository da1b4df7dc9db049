"""Benchmark: does the fit model hold where it was not fitted, and how small can a capture be?

Guest shapes the calibration never used, each booted in QEMU (TCG) and
searched in 8 MiB steps like bench/calibrate_crashkernel.py does
(bench/calibration_search.py) (the
smallest crashkernel= whose dump completes and validates, booted twice):

- 8 GiB with 4 vCPUs (the default recipe, Debian 12's kernel reused);
- 2 GiB with the NFS target;
- the dedicated capture kernel: Debian's cloud kernel under the generic one
  (recipes/qemu-x86_64-dedicated.toml);
- the reused generic kernel on the 1 GiB guest, the dedicated kernel's anchor;
- a minimal capture kernel built from linux-source with
  bench/minimal-kernel.config (bench/minimal_kernel.py), dedicated, on 1 GiB.

For each: the model's recommendation with the stored calibration of the
capture kernel's series (never refitted here), and the check that it is
never below the measured minimum and at most 32 MiB above it.

    .venv/bin/python -m bench.fit_generalises

Trials are logged in ~/.cache/kdump-build/bench/fit-trials.jsonl keyed by
the capture's bytes, so a rerun of unchanged captures boots nothing.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path

from bench.calibration_boot import boot, build_capture, nfs_server
from bench.calibration_fit import ANCHOR, recommendation
from bench.calibration_search import Capture, Config, TrialLog, search
from bench.minimal_kernel import minimal_kernel
from builder.crashkernel.model import default_calibration
from builder.image.cache import default_cache_dir
from builder.units import MiB
from tests.support import recipes
from tests.support.paths import DEFAULT_RECIPE, REPO

DEDICATED_RECIPE = REPO / "recipes" / "qemu-x86_64-dedicated.toml"
GENEROSITY = 32 * MiB
MINIMAL_GOAL = 64 * MiB


@dataclass(frozen=True)
class Shape:
    """One guest to measure: its configuration, the recipe, and what it checks."""

    name: str
    config: Config
    recipe: Path
    checks_model: bool = True  # False: measured for its minimum only


@dataclass(frozen=True)
class Outcome:
    shape: Shape
    capture: Capture
    minimum: int | None  # bytes
    recommended: int  # bytes

    @property
    def margin(self) -> int | None:
        return None if self.minimum is None else self.recommended - self.minimum

    @property
    def holds(self) -> bool:
        return self.margin is not None and 0 <= self.margin <= GENEROSITY


def minimal_recipe(work: Path) -> Path:
    """The default recipe with the minimal kernel as a dedicated capture kernel (no modules)."""
    kernel = minimal_kernel()
    return recipes.write_recipe(
        work / "qemu-x86_64-minimal.toml",
        {
            "source": {"package_files": [str(kernel.package)]},
            "kernel": {
                "mode": "dedicated",
                "image": "/boot/vmlinuz-*-amd64",
                "dedicated_image": f"/boot/vmlinuz-{kernel.release}",
            },
            "initrd": {"modules": []},
        },
    )


CLOUD_SHAPE = "1G/1cpu, dedicated cloud 6.1"
REUSED_SHAPE = "1G/1cpu, reused generic 6.1"
MINIMAL_SHAPE = "1G/1cpu, dedicated minimal 6.1"
# The captures whose minimum goal 3 reports, side by side.
MINIMUM_SHAPES = (REUSED_SHAPE, CLOUD_SHAPE, MINIMAL_SHAPE)


def shapes(work: Path) -> list[Shape]:
    return [
        Shape("8G/4cpu, reused 6.1", Config(8192, 4), DEFAULT_RECIPE),
        Shape("2G/1cpu, nfs, reused 6.1", Config(2048, 1, target="nfs"), DEFAULT_RECIPE),
        Shape(CLOUD_SHAPE, Config(1024, 1), DEDICATED_RECIPE),
        Shape(REUSED_SHAPE, Config(1024, 1), DEFAULT_RECIPE, checks_model=False),
        Shape(MINIMAL_SHAPE, Config(1024, 1), minimal_recipe(work)),
    ]


def measure(shape: Shape, args: argparse.Namespace, trials: TrialLog) -> Outcome:
    capture = build_capture(args.work, shape.config, shape.recipe)
    minimum, _ = search(capture, shape.config, args.guess, trials, args.work, args.timeout,
                        args.idle, boot)  # fmt: skip
    calibration = default_calibration("x86_64", capture.kernel_version)
    ram = shape.config.memory_mib * MiB
    recommended = recommendation(capture.profile, ram, calibration)
    return Outcome(shape, capture, None if minimum is None else minimum * MiB, recommended)


def lines(outcomes: list[Outcome]) -> list[str]:
    table = [
        f"  {'guest, capture kernel':<32} {'init_size':>9} {'minimum':>8} {'recommended':>11} "
        f"{'margin':>7}  verdict",
    ]
    for outcome in outcomes:
        size = outcome.capture.profile.kernel_memory_size / MiB
        minimum = "none" if outcome.minimum is None else f"{outcome.minimum // MiB}M"
        margin = "" if outcome.margin is None else f"{outcome.margin // MiB:+}M"
        verdict = ("holds" if outcome.holds else "FAILS") if outcome.shape.checks_model else "-"
        table.append(
            f"  {outcome.shape.name:<32} {size:8.1f}M {minimum:>8} "
            f"{outcome.recommended // MiB:>10}M {margin:>7}  {verdict}"
        )
    checked = [outcome for outcome in outcomes if outcome.shape.checks_model]
    smallest = min((o.minimum for o in outcomes if o.minimum is not None), default=None)
    table += [
        f"  model holds on unseen shapes (0 <= margin <= 32M): "
        f"{'met' if all(o.holds for o in checked) else 'NOT met'}",
        f"  smallest capture: {smallest // MiB if smallest else 'none'}M on 1 GiB "
        f"(goal <= {MINIMAL_GOAL // MiB}M: "
        f"{'met' if smallest and smallest <= MINIMAL_GOAL else 'NOT met'}; "
        f"kdump-utils' default {ANCHOR // MiB}M)",
    ]
    return table


@dataclass(frozen=True)
class Run:
    """The outcomes, and how many trials booted now or came from the trial log."""

    outcomes: list[Outcome]
    booted: int
    logged: int

    def provenance(self) -> str:
        return (f"  QEMU trials: {self.booted} booted in this run, {self.logged} from the "
                "trial log (same capture bytes)")  # fmt: skip


def run(args: argparse.Namespace) -> Run:
    args.work.mkdir(parents=True, exist_ok=True)
    trials = TrialLog(args.work / "fit-trials.jsonl", fresh=False)
    known = set(trials.entries)
    measured = shapes(args.work)
    with contextlib.ExitStack() as stack:
        if any(shape.config.target == "nfs" for shape in measured):
            stack.enter_context(nfs_server(args.work))
        outcomes = [measure(shape, args, trials) for shape in measured]
    used = {(o.capture.key, o.shape.config.name) for o in outcomes}
    logged = sum(1 for key, name, _ in known if (key.removesuffix("-confirm"), name) in used)
    return Run(outcomes, len(set(trials.entries) - known), logged)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=default_cache_dir() / "bench" / "fit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per boot")
    parser.add_argument("--idle", type=float, default=200, help="seconds without console output")
    parser.add_argument("--guess", type=int, default=96, help="first size to try, MiB")
    return parser.parse_args(argv)


def main() -> None:
    result = run(parse_args())
    print("fit model on guests the calibration never used, and the smallest captures")
    print("\n".join([*lines(result.outcomes), result.provenance()]))


if __name__ == "__main__":
    main()
