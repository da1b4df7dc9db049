"""Benchmark: start-up of the command line, and the warm build against dracut's warm run.

`kdump-build --help` and `kdump-build status` (what a boot-time service runs),
and the default recipe's warm build (packages read, initrd compressed and
cached, as on any rebuild without changes), each a whole process of the
installed entry point, against dracut's second run of its minimal image of the
same kernel and content (bench/dracut.py), both best of BUILD_REPEATS, all
measured in this run. Also dracut's cold run (its first on a freshly installed
kernel, best of COLD_REPEATS), which bench/report.py sets against our first
build after a kernel update (bench/kernel_update.py, as many repeats).

    .venv/bin/python -m bench.startup
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    Build,
    Spread,
    best_build,
    kdump_build,
    kdump_build_command,
    machine,
    scratch,
    spread,
)
from bench.common import shared_cache as default_cache
from bench.dracut import COMPRESSION, DracutRun, dracut_cold, dracut_warm, unpack_sysroot
from bench.kernel_update import REPEATS as COLD_REPEATS
from builder.cli.kexec import NOT_READY_EXIT_CODE
from builder.recipe.settings import DEFAULT_COMPRESSION_LEVEL
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
    dracut: DracutRun  # its second run (warm)
    dracut_cold: DracutRun  # its first run on a freshly installed kernel

    @property
    def ratio(self) -> float:
        """Warm vs warm: dracut's second run over our rebuild."""
        return self.dracut.seconds / self.warm.seconds


def measure(work: Path) -> Startup:
    work.mkdir(parents=True, exist_ok=True)
    command = kdump_build_command()
    help_times = spread([*command, "--help"], RUNS)
    # status answers "not ready" with NOT_READY_EXIT_CODE on a machine without a loaded
    # capture (a build machine): a whole answer, timed as one.
    status_times = spread([*command, "status"], RUNS, expected=(0, NOT_READY_EXIT_CODE))
    cache = default_cache()
    kdump_build(DEFAULT_RECIPE, work / "warm", cache)  # fills whatever is not cached yet
    warm = best_build(BUILD_REPEATS, lambda: kdump_build(DEFAULT_RECIPE, work / "warm", cache))
    sysroot = work / "sysroot"
    unpack_sysroot(work / "warm", cache, sysroot)
    kernel = str(warm.summary["kernel"])
    dracut = dracut_warm(work, sysroot, kernel, BUILD_REPEATS)
    cold = dracut_cold(work, work / "warm", cache, kernel, COLD_REPEATS)
    return Startup(help_times, status_times, warm, dracut, cold)


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
        f"  warm build           {result.warm.seconds:.2f} s (best of {len(result.warm.runs)}; "
        f"in-process {result.warm.summary['seconds']} s: {steps})",
        f"  dracut {result.dracut.version} minimal image, second run  "
        f"{result.dracut.seconds:.2f} s (best of {len(result.dracut.runs)}) "
        f"-> warm vs warm {result.ratio:.1f}x; goal >= {DRACUT_RATIO_GOAL:.0f}x: "
        f"{verdict(result.ratio >= DRACUT_RATIO_GOAL)}",
        f"  dracut, first run on a freshly installed kernel  {result.dracut_cold.seconds:.2f} s "
        f"(best of {len(result.dracut_cold.runs)})",
        f"  compression: ours zstd -{DEFAULT_COMPRESSION_LEVEL} (recipe default), dracut "
        f"{COMPRESSION}",
    ]


def main() -> None:
    print(machine())
    with scratch("kdump-startup.") as work:
        print("\n".join(lines(measure(work))))


if __name__ == "__main__":
    main()
