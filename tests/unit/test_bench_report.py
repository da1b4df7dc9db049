"""The bench report's two dracut ratios: both rows, each side's repeats as counted in the
run, each side's compression level; sides timed a different number of times are no
comparison, and the verdict says so (issue 19 item 8).

The inputs are synthetic measurements shaped as bench.startup and bench.kernel_update
return them; `./bootstrap bench` prints the same rows from real runs.
"""

from __future__ import annotations

import pytest

from bench import kernel_update, startup
from bench.common import Build, Spread, best_build
from bench.dracut import DracutRun
from bench.report import dracut_rows

LEVELS = "ours zstd -8, dracut's zstd -15 -T0"


def _build(runs: tuple[float, ...]) -> Build:
    return Build(min(runs), 1 << 20, {"steps": {}}, runs)


def _dracut(runs: tuple[float, ...]) -> DracutRun:
    return DracutRun(min(runs), 1 << 22, "059-4", ("dracut",), 30, runs)


def _rows(warm: tuple[float, ...], dracut_warm: tuple[float, ...], cold: tuple[float, ...],
          dracut_cold: tuple[float, ...]) -> list[tuple[str, str, str, str]]:  # fmt: skip
    spread = Spread(0.1, 0.1, 20)
    result = startup.Startup(
        spread, spread, _build(warm), _dracut(dracut_warm), _dracut(dracut_cold)
    )
    update = kernel_update.KernelUpdate("old", "new", _build(cold), _build((0.5,)), 1, True)
    return [
        (row.goal, row.measured, row.anchor, row.verdict) for row in dracut_rows(result, update)
    ]


def test_both_ratios_with_each_sides_repeats_and_level() -> None:
    rows = _rows((0.3, 0.2, 0.25, 0.2, 0.4), (3.0, 2.5, 2.6, 2.9, 2.7), (6.0, 5.0, 5.5),
                 (4.0, 3.0, 3.5))  # fmt: skip
    assert rows == [
        (f"1 warm vs warm: our rebuild vs dracut's second run (best of 5 each; {LEVELS})",
         "0.20 s vs 2.50 s: 12.5x", ">= 10x", "met"),
        ("1 cold vs cold: our first build after a kernel update vs dracut on a freshly "
         f"installed kernel (best of 3 each; {LEVELS})", "5.00 s vs 3.00 s: 0.6x",
         "- (reported)", "SLOWER"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("warm", "cold", "side", "counts"),
    [
        ((0.2,), (5.0, 5.5, 6.0), 0, "best of 1 ours, 5 dracut's"),
        ((0.2, 0.3, 0.2, 0.3, 0.2), (5.0, 5.5, 6.0, 5.0), 1, "best of 4 ours, 3 dracut's"),
    ],
)
def test_unequal_repeats_are_no_ratio(
    warm: tuple[float, ...], cold: tuple[float, ...], side: int, counts: str
) -> None:
    rows = _rows(warm, (3.0, 2.5, 2.6, 2.9, 2.7), cold, (4.0, 3.0, 3.5))
    assert f"({counts}; {LEVELS})" in rows[side][0], rows[side]
    assert rows[side][3] == "UNFAIR: repeats differ", rows[side]
    assert rows[1 - side][3] in {"met", "SLOWER"}, rows[1 - side]


def test_best_build_keeps_every_run() -> None:
    times = iter([0.4, 0.2, 0.3])
    best = best_build(3, lambda: _build((next(times),)))
    assert (best.seconds, best.runs) == (0.2, (0.4, 0.2, 0.3))
