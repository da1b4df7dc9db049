"""Benchmark: start-up of the command line, and the warm build against dracut.

`kdump-build --help` and `kdump-build status` (what a boot-time service runs),
and the default recipe's warm build (packages read, initrd compressed and
cached, as on any rebuild without changes), each a whole process of the
installed entry point, against dracut's minimal image of the same kernel and
content (bench/dracut.py), all measured in this run.

    .venv/bin/python -m bench.startup
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    Build,
    Spread,
    best_of,
    kdump_build,
    kdump_build_command,
    machine,
    scratch,
    spread,
)
from bench.common import shared_cache as default_cache
from bench.dracut import DracutRun, dracut_minimal, unpack_sysroot
from tests.support.paths import DEFAULT_RECIPE

HELP_GOAL = 0.150
STATUS_GOAL = 0.200
DRACUT_RATIO_GOAL = 10.0
RUNS = 20
BUILD_REPEATS = 5


@dataclass(frozen=True)
class Startup:
    help: Spread
    status: Spread
    warm: Build
    dracut: DracutRun

    @property
    def ratio(self) -> float:
        return self.dracut.seconds / self.warm.seconds


def measure(work: Path) -> Startup:
    work.mkdir(parents=True, exist_ok=True)
    command = kdump_build_command()
    help_times = spread([*command, "--help"], RUNS)
    status_times = spread([*command, "status"], RUNS)
    cache = default_cache()
    kdump_build(DEFAULT_RECIPE, work / "warm", cache)  # fills whatever is not cached yet
    warm = best_of(BUILD_REPEATS, lambda: kdump_build(DEFAULT_RECIPE, work / "warm", cache),
                   key=lambda build: build.seconds)  # fmt: skip
    sysroot = work / "sysroot"
    unpack_sysroot(work / "warm", cache, sysroot)
    dracut = dracut_minimal(work, sysroot, str(warm.summary["kernel"]))
    return Startup(help_times, status_times, warm, dracut)


def lines(result: Startup) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in result.warm.steps.items()
                      if seconds >= 0.005)  # fmt: skip
    return [
        f"start-up (whole processes of {kdump_build_command()[0]})",
        f"  kdump-build --help   {result.help}  goal <= {HELP_GOAL * 1000:.0f} ms: "
        f"{verdict(result.help.best <= HELP_GOAL)}",
        f"  kdump-build status   {result.status}  goal <= {STATUS_GOAL * 1000:.0f} ms: "
        f"{verdict(result.status.best <= STATUS_GOAL)}",
        f"  warm build           {result.warm.seconds:.2f} s (best of {BUILD_REPEATS}; "
        f"in-process {result.warm.summary['seconds']} s: {steps})",
        f"  dracut {result.dracut.version} minimal image  {result.dracut.seconds:.2f} s "
        f"-> {result.ratio:.1f}x; goal >= {DRACUT_RATIO_GOAL:.0f}x: "
        f"{verdict(result.ratio >= DRACUT_RATIO_GOAL)}",
    ]


def main() -> None:
    print(machine())
    with scratch("kdump-startup.") as work:
        print("\n".join(lines(measure(work))))


if __name__ == "__main__":
    main()
