"""Every goal of the speed and size work in one table, measured in one run on this machine.

    .venv/bin/python -m bench.report            # measure, print, update docs/performance.md
    .venv/bin/python -m bench.report --no-vm    # without the QEMU shapes (minutes instead)

It runs bench.startup (start-up, warm build against dracut), bench.kernel_update
(the zstd curve, the rebuild after a real kernel update) and bench.fit_generalises
(the fit model on guests the calibration never used, the dedicated and minimal
capture kernels) and, with the QEMU shapes, bench.loader_cost (kdump-load's boot
cost against kdump-build load and kexec -p, issue 20 item 4), reads the stored
calibrations, and prints the machine (CPUs, load average at the start and the
end) and the date with the table, then the details. `./bootstrap bench` runs this.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import fit_generalises, kernel_update, loader_cost, startup
from bench.calibration_fit import ANCHOR, recommendation
from bench.common import machine, scratch
from bench.loader_cost_table import goal_rows, section
from builder.crashkernel.model import CaptureProfile, calibrations, load_calibration
from builder.recipe.settings import DEFAULT_COMPRESSION_LEVEL
from builder.units import MiB
from tests.support.paths import REPO

DOC = REPO / "docs" / "performance.md"
# What the two dracut ratios compare; docs/performance.md carries it above every report.
DEFINITIONS = f"""## The two dracut ratios

Both sides build the same content as far as dracut can express it: the default
recipe's kernel modules (virtio_blk, virtio_pci, ext4 and their dependencies)
and makedumpfile, from the same Debian packages. Each side's time is the best of
the same number of whole-process runs; each ratio is dracut's time over ours.

- **warm vs warm** (the 10x goal): our second build of an unchanged recipe
  (packages read and archives compressed by the first, as on any rebuild)
  against dracut's second run on the same unpacked, depmod'ed kernel (the first
  run untimed), {startup.BUILD_REPEATS} runs each.
- **cold vs cold** (reported, no goal): our first build after a kernel update
  (the new kernel's package downloaded but not yet read, nothing of it cached;
  the cache reset to that state before each run) against dracut's first run on a
  freshly installed kernel (the package unpacked and depmod'ed afresh before each
  run, untimed: that is the package's installation), {kernel_update.REPEATS} runs each.
- Compression: ours zstd level {DEFAULT_COMPRESSION_LEVEL} (the recipe default, one thread per
  archive); dracut 059's `--compress zstd`, which is `zstd -15 -q -T0` (level 15, all CPUs).
"""


@dataclass(frozen=True)
class Row:
    goal: str
    measured: str
    anchor: str
    verdict: str


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def startup_rows(result: startup.Startup) -> list[Row]:
    return [
        Row("1 `kdump-build --help`", f"{result.help.best * 1000:.0f} ms", "<= 150 ms",
            _verdict(result.help.best <= startup.HELP_GOAL)),
        Row("1 `kdump-build status`", f"{result.status.best * 1000:.0f} ms", "<= 200 ms",
            _verdict(result.status.best <= startup.STATUS_GOAL)),
    ]  # fmt: skip


def _repeats(ours: Sequence[float], dracut: Sequence[float]) -> tuple[str, bool]:
    """Each side's repeats, as counted in this run, and whether they are the same."""
    if len(ours) == len(dracut):
        return f"best of {len(ours)} each", True
    return f"best of {len(ours)} ours, {len(dracut)} dracut's", False


def dracut_rows(result: startup.Startup, update: kernel_update.KernelUpdate) -> list[Row]:
    """The two dracut ratios side by side (docs/performance.md defines them). A ratio of
    sides timed a different number of times is not a comparison: its verdict says so."""
    cold = result.dracut_cold.seconds / update.first.seconds
    levels = f"ours zstd -{DEFAULT_COMPRESSION_LEVEL}, dracut's zstd -15 -T0"
    warm_repeats, warm_fair = _repeats(result.warm.runs, result.dracut.runs)
    cold_repeats, cold_fair = _repeats(update.first.runs, result.dracut_cold.runs)
    unfair = "UNFAIR: repeats differ"
    warm_verdict = _verdict(result.ratio >= startup.DRACUT_RATIO_GOAL) if warm_fair else unfair
    cold_verdict = ("faster" if cold > 1 else "SLOWER") if cold_fair else unfair
    return [
        Row(f"1 warm vs warm: our rebuild vs dracut's second run ({warm_repeats}; {levels})",
            f"{result.warm.seconds:.2f} s vs {result.dracut.seconds:.2f} s: "
            f"{result.ratio:.1f}x", ">= 10x", warm_verdict),
        Row(f"1 cold vs cold: our first build after a kernel update vs dracut on a freshly "
            f"installed kernel ({cold_repeats}; {levels})",
            f"{update.first.seconds:.2f} s vs {result.dracut_cold.seconds:.2f} s: {cold:.1f}x",
            "- (reported)", cold_verdict),
    ]  # fmt: skip


def update_rows(update: kernel_update.KernelUpdate, chosen: kernel_update.LevelPoint) -> list[Row]:
    return [
        Row(f"2 rebuild after {update.previous} -> {update.current}, packages read",
            f"{update.rebuild.seconds:.2f} s ({update.recompressed} of 3 archives afresh)",
            "<= 1.0 s", _verdict(update.rebuild.seconds <= kernel_update.REBUILD_GOAL)),
        Row("2 (first build with the new kernel: reads its 70 MB package)",
            f"{update.first.seconds:.2f} s", "-", "-"),
        Row("2 zstd level from the curve (least reservation within 3 MiB)",
            f"level {chosen.level}: {chosen.size / MiB:.2f} MiB, window "
            f"{chosen.window / MiB:.1f}M", f"recipe default {DEFAULT_COMPRESSION_LEVEL}",
            "agrees" if chosen.level == DEFAULT_COMPRESSION_LEVEL else "DISAGREES"),
    ]  # fmt: skip


def calibration_rows() -> list[Row]:
    """Goal 4 on each stored kernel's own runs: margins of the recommendation."""
    rows = []
    for (arch, (major, minor)), path in sorted(calibrations().items()):
        record = json.loads(path.read_text())
        calibration = load_calibration(path)
        margins = []
        for measurement in record["measurements"]:
            profile = CaptureProfile(**record["profiles"][measurement["variant"]])
            rec = recommendation(profile, measurement["ram"], calibration)
            margins.append(rec - measurement["minimum"])
        ok = all(0 <= margin <= fit_generalises.GENEROSITY for margin in margins)
        minima = sorted({m["minimum"] // MiB for m in record["measurements"]})
        rows.append(Row(
            f"4 calibration {arch} {major}.{minor} ({record['kernel']}), "
            f"{len(margins)} guests", f"minima {'/'.join(map(str, minima))}M, margins "
            f"{min(margins) // MiB}..{max(margins) // MiB}M", "0..32M", _verdict(ok),
        ))  # fmt: skip
    return rows


def fit_rows(outcomes: Sequence[fit_generalises.Outcome]) -> list[Row]:
    rows = []
    for outcome in outcomes:
        minimum = "none" if outcome.minimum is None else f"{outcome.minimum // MiB}M"
        size = outcome.capture.profile.kernel_memory_size / MiB
        text = (f"min {minimum}, recommended {outcome.recommended // MiB}M "
                f"(init_size {size:.1f}M)")  # fmt: skip
        if outcome.shape.checks_model:
            rows.append(Row(f"4 unseen guest {outcome.shape.name}", text, "0..32M over",
                            _verdict(outcome.holds)))  # fmt: skip
        if outcome.shape.name in fit_generalises.MINIMUM_SHAPES:
            rows.append(_minimum_row(outcome, minimum))
    return rows


def _minimum_row(outcome: fit_generalises.Outcome, minimum: str) -> Row:
    """Goal 3: the capture's minimum; the minimal kernel's against 64M, all against 256M."""
    anchor = f"kdump-utils {ANCHOR // MiB}M"
    ratio = "" if outcome.minimum is None else f" ({outcome.minimum / ANCHOR:.2f}x)"
    if outcome.shape.name != fit_generalises.MINIMAL_SHAPE:
        return Row(f"3 minimum reservation, {outcome.shape.name}", minimum + ratio, anchor, "-")
    ok = outcome.minimum is not None and outcome.minimum <= fit_generalises.MINIMAL_GOAL
    return Row(f"3 minimum reservation, {outcome.shape.name}", minimum + ratio,
               f"<= {fit_generalises.MINIMAL_GOAL // MiB}M; {anchor}", _verdict(ok))  # fmt: skip


def table(rows: Sequence[Row]) -> list[str]:
    header = Row("goal", "measured", "anchor / goal", "verdict")
    lines = [f"| {header.goal} | {header.measured} | {header.anchor} | {header.verdict} |",
             "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {row.goal} | {row.measured} | {row.anchor} | {row.verdict} |" for row in rows]
    return lines


def measure(vm: bool) -> tuple[list[Row], list[str], dict[str, Any] | None]:
    with scratch("kdump-report.") as work:
        started = startup.measure(work / "startup")
        points = kernel_update.level_curve(kernel_update.default_archives())
        chosen = kernel_update.choose_level(points)
        update = kernel_update.kernel_update(work / "update")
    rows = [*startup_rows(started), *dracut_rows(started, update), *update_rows(update, chosen)]
    details = [*startup.lines(started), "", *kernel_update.curve_lines(points, chosen), "",
               *kernel_update.update_lines(update)]  # fmt: skip
    outcomes: list[fit_generalises.Outcome] = []
    cost = None
    if vm:
        result = fit_generalises.run(fit_generalises.parse_args([]))
        outcomes = result.outcomes
        details += ["", "fit model on unseen guests (QEMU, 8 MiB steps)",
                    *fit_generalises.lines(outcomes), result.provenance()]  # fmt: skip
        cost = loader_cost.run()
        details += ["", "loader boot cost (one QEMU guest)", *loader_cost.report(cost)]
    rows += [*fit_rows(outcomes), *calibration_rows()]
    rows += [Row(*row) for row in goal_rows(cost)] if cost is not None else []
    return rows, details, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-vm", action="store_true", help="skip the QEMU shapes")
    parser.add_argument("--no-doc", action="store_true", help=f"do not update {DOC.name}")
    args = parser.parse_args()
    before = machine()
    rows, details, cost = measure(vm=not args.no_vm)
    after = machine()
    head = [f"machine at the start: {before}", f"machine at the end:   {after}", ""]
    text = [*head, *table(rows), "", "```", *details, "```"]
    print("\n".join(text))
    if not args.no_doc and not args.no_vm:
        loader = "" if cost is None else "\n" + section(cost)
        DOC.write_text(
            "# Performance\n\nThe latest `./bootstrap bench` (`python -m bench.report`) on the "
            "build machine. Times, sizes and ratios are measured in that run; a QEMU minimum "
            "comes from the trial log when its capture's bytes are unchanged (the details say "
            "how many trials booted).\n\n" + DEFINITIONS + "\n" + "\n".join(text) + "\n" + loader
        )
        if cost is not None:  # the store docs/performance.md's loader section comes from
            loader_cost.store_evidence(cost)
        print(f"wrote {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
