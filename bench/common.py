"""What the benchmarks share: running commands and kdump-build, repeats, the machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from tests.support.paths import REPO

T = TypeVar("T")
MIB = 1 << 20
# The installed entry point, as a boot-time service runs it; else the module.
ENTRY_POINT = REPO / ".venv" / "bin" / "kdump-build"


def kdump_build_command() -> list[str]:
    return [str(ENTRY_POINT)] if ENTRY_POINT.exists() else [sys.executable, "-m", "builder.cli"]


def run(
    command: Sequence[str], expected: Collection[int] = (0,), **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a command; exit with its stderr's tail when it exits with a code not `expected`."""
    result = subprocess.run(list(command), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode not in expected:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return result  # type: ignore[no-any-return]


def timed(
    command: Sequence[str], expected: Collection[int] = (0,), **kwargs: object
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall time of one whole process."""
    start = time.perf_counter()
    result = run(command, expected, **kwargs)
    return time.perf_counter() - start, result


@dataclass(frozen=True)
class Build:
    """One `kdump-build RECIPE --json` process: wall time, initrd size, its JSON summary."""

    seconds: float
    initrd_size: int
    summary: dict[str, object]
    # Every timed run when this is the fastest of several (best_build): the report states
    # each side's repeats from these, not from a constant it assumes both sides used.
    runs: tuple[float, ...] = ()

    @property
    def steps(self) -> dict[str, float]:
        steps = self.summary["steps"]
        assert isinstance(steps, dict)
        return {str(name): float(value) for name, value in steps.items()}


def kdump_build(recipe: Path, outdir: Path, cache: Path) -> Build:
    """Build `recipe` into `outdir` with `cache` as KDUMP_BUILD_CACHE, timed as a process."""
    env = {**os.environ, "KDUMP_BUILD_CACHE": str(cache)}
    env.pop("SOURCE_DATE_EPOCH", None)
    seconds, result = timed(
        [*kdump_build_command(), str(recipe), "-o", str(outdir), "--json"], env=env, cwd=REPO
    )
    return Build(seconds, (outdir / "initrd.img").stat().st_size, json.loads(result.stdout))


def best_of(count: int, measure: Callable[[], T], key: Callable[[T], float]) -> T:
    """The fastest of `count` runs (the least disturbed by the machine's other work)."""
    return min((measure() for _ in range(count)), key=key)


def best_build(count: int, measure: Callable[[], Build]) -> Build:
    """The fastest of `count` builds, carrying every run's time."""
    builds = [measure() for _ in range(count)]
    fastest = min(builds, key=lambda build: build.seconds)
    return replace(fastest, runs=tuple(build.seconds for build in builds))


@dataclass(frozen=True)
class Spread:
    """Repeated wall times of one command: the best and the median."""

    best: float
    median: float
    runs: int

    def __str__(self) -> str:
        return f"{self.best * 1000:.0f} ms (median {self.median * 1000:.0f} ms of {self.runs})"


def spread(command: Sequence[str], runs: int, expected: Collection[int] = (0,)) -> Spread:
    times = [timed(command, expected)[0] for _ in range(runs)]
    return Spread(min(times), statistics.median(times), runs)


def machine() -> str:
    """nproc, the load average and the date: what a reader needs to judge the numbers."""
    one, five, fifteen = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {one:.2f} {five:.2f} {fifteen:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


def seed_cache(shared: Path, private: Path) -> Path:
    """A private KDUMP_BUILD_CACHE holding the shared cache's package files (hard links)
    and apt state, so a benchmark reads packages afresh without downloading them."""
    for name in ("debs", "apt"):
        source = shared / name
        if source.is_dir() and not (private / name).exists():
            copy = shutil.copytree if name == "apt" else _link_tree
            copy(source, private / name)
    return private


def _link_tree(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, copy_function=os.link)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary working directory, removed afterwards whatever happens."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


def shared_cache() -> Path:
    return Path(os.environ.get("KDUMP_BUILD_CACHE", Path.home() / ".cache/kdump-build"))
