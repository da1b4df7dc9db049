"""Benchmark: the rebuild after a kernel update, and the zstd curve the default level follows.

The curve: the default recipe's three archives (programs, modules, rendered
files) compressed at every zstd level 1-19 here: the initrd's size, the
largest window the kernel's decoder allocates, the reservation both take
(compressed initrd + decoder workspace, what the level changes in the fit
model), the time for all archives and for the modules archive alone (what a
kernel update recompresses). The rule for the recipe's default level: among
the levels that keep the initrd within 3 MiB, the one that needs the least
reservation; the faster on a tie. Sizes are deterministic, so the choice is.

The kernel update, for real: the default recipe built with the previous
Debian kernel ABI package (linux-image-6.1.0-N-1-amd64), then with the current
one, in a private cache seeded with the shared cache's package files. The
first build with the new kernel reads its 70 MB package; the rebuild with the
packages read (the package index and read members cached, as after
`kdump-build fetch` or any build) is the goal: only the new kernel's modules
and the files naming them are compressed afresh, the programs archive comes
from the cache.

    .venv/bin/python -m bench.kernel_update
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    MIB,
    Build,
    best_build,
    best_of,
    kdump_build,
    machine,
    scratch,
    seed_cache,
    shared_cache,
)
from builder.binfmt.cpio import write_cpio
from builder.compression import Compression, compress, decoder_workspace
from builder.errors import FetchError
from builder.image import content
from builder.image.fetch import fetch_packages
from builder.image.initrd import MemberKind, split_archives
from builder.image.kernel import capture_kernel
from builder.image.pipeline import Steps, open_root, plan_initrd
from builder.recipe.parse import load_recipe
from builder.recipe.settings import DEFAULT_COMPRESSION_LEVEL
from tests.support import recipes
from tests.support.paths import DEFAULT_RECIPE

SIZE_LIMIT = 3 * MIB  # the default initrd's size goal
LEVELS = range(1, 20)
REPEATS = 3
ABI_PACKAGE = re.compile(r"^linux-image-(?P<base>\d+\.\d+\.\d+)-(?P<abi>\d+)-(?P<flavour>\w+)$")
REBUILD_GOAL = 1.0


@dataclass(frozen=True)
class LevelPoint:
    level: int
    size: int
    window: int  # the decoder workspace of the largest stream
    all_seconds: float
    modules_seconds: float

    @property
    def reservation(self) -> int:
        """What the level changes in the capture's needs: compressed initrd + decoder."""
        return self.size + self.window


def default_archives() -> dict[content.Archive, bytes]:
    """The default recipe's archives as written, before compression."""
    recipe = load_recipe(DEFAULT_RECIPE)
    root, _ = open_root(recipe, Steps())
    kernel = capture_kernel(recipe, root)
    members = tuple(plan_initrd(recipe, root, kernel.version, Steps()).members())
    parts = split_archives(members, content.archive_of)
    # Each part is named by the archive of its files (its directories may be anyone's).
    return {
        content.archive_of(next(m for m in part if m.kind is not MemberKind.DIR)): write_cpio(
            part, 0
        )
        for part in parts
    }


def _fastest(data: bytes, level: int) -> tuple[float, bytes]:
    best, out = float("inf"), b""
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = compress(data, Compression.ZSTD, level)
        best = min(best, time.perf_counter() - start)
    return best, out


def level_curve(archives: dict[content.Archive, bytes]) -> list[LevelPoint]:
    points = []
    for level in LEVELS:
        results = {kind: _fastest(data, level) for kind, data in archives.items()}
        streams = [out for _, out in results.values()]
        points.append(
            LevelPoint(
                level,
                sum(map(len, streams)),
                max(decoder_workspace(stream)[0] for stream in streams),
                sum(seconds for seconds, _ in results.values()),
                results[content.Archive.MODULES][0],
            )
        )
    return points


def choose_level(points: list[LevelPoint]) -> LevelPoint:
    """The rule: least reservation among levels within the size limit; faster on a tie."""
    within = [point for point in points if point.size <= SIZE_LIMIT]
    return min(within, key=lambda point: (point.reservation, point.all_seconds))


def curve_lines(points: list[LevelPoint], chosen: LevelPoint) -> list[str]:
    lines = [
        "zstd level curve of the default initrd (3 archives; times best of "
        f"{REPEATS}, one thread per archive)",
        "  level   initrd MiB   window  reservation MiB   all archives   modules archive",
    ]
    for point in points:
        mark = " <- rule" if point is chosen else ""
        mark += " (recipe default)" if point.level == DEFAULT_COMPRESSION_LEVEL else ""
        lines.append(
            f"  {point.level:5}   {point.size / MIB:10.3f}   {point.window / MIB:5.1f}M"
            f"  {point.reservation / MIB:15.2f}   {point.all_seconds:10.3f} s"
            f"   {point.modules_seconds:13.3f} s{mark}"
        )
    return lines


@dataclass(frozen=True)
class KernelUpdate:
    previous: str
    current: str
    first: Build  # the first build with the new kernel (its package read), best of REPEATS
    rebuild: Build  # packages read, the new kernel's archives compressed afresh
    recompressed: int  # compressed-cache entries the update added
    identical: bool  # the rebuild's initrd equals the first build's


def previous_abi(current: str) -> str:
    """The newest kernel ABI package before `current` that Debian still has."""
    match = ABI_PACKAGE.match(current)
    if match is None:
        raise SystemExit(f"{current}: not a linux-image-<version>-<abi>-<flavour> package")
    for abi in range(int(match["abi"]) - 1, max(0, int(match["abi"]) - 10), -1):
        name = f"linux-image-{match['base']}-{abi}-{match['flavour']}"
        try:
            fetch_packages([name], "x86_64")
        except FetchError:
            continue
        return name
    raise SystemExit(f"no kernel ABI package before {current} in the archive")


def _recipe_with_kernel(path: Path, kernel_package: str) -> Path:
    packages = [kernel_package if name == "linux-image-amd64" else name
                for name in load_recipe(DEFAULT_RECIPE).source.packages]  # fmt: skip
    return recipes.write_recipe(path, {"source": {"packages": packages}})


def kernel_update(work: Path) -> KernelUpdate:
    work.mkdir(parents=True, exist_ok=True)
    (current,) = [p.name for p in fetch_packages(["linux-image-amd64"], "x86_64")]
    previous = previous_abi(current)
    cache = seed_cache(shared_cache(), work / "cache")
    before_recipe = _recipe_with_kernel(work / "before.toml", previous)
    after_recipe = _recipe_with_kernel(work / "after.toml", current)
    kdump_build(before_recipe, work / "before", cache)  # reads the old kernel's package
    kdump_build(before_recipe, work / "before", cache)  # the system before the update, warm
    before_update = _files(cache)

    def cold() -> Build:
        """Our first build after the update: the cache as before it (packages not yet read)."""
        for path in _files(cache) - before_update:
            path.unlink()
        return kdump_build(after_recipe, work / "first", cache)

    first = best_build(REPEATS, cold)
    compressed = cache / "compressed"
    added_files = [path for path in _files(compressed) if path not in before_update]

    def rebuild() -> Build:
        for path in added_files:
            path.unlink(missing_ok=True)
        return kdump_build(after_recipe, work / "after", cache)

    again = best_of(REPEATS, rebuild, key=lambda build: build.seconds)
    identical = (work / "after/initrd.img").read_bytes() == (work / "first/initrd.img").read_bytes()
    return KernelUpdate(previous, current, first, again, len(added_files), identical)


def _files(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()}


def update_lines(update: KernelUpdate) -> list[str]:
    steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in update.rebuild.steps.items()
                      if seconds >= 0.005)  # fmt: skip
    verdict = "met" if update.rebuild.seconds <= REBUILD_GOAL else "NOT met"
    return [
        f"kernel update {update.previous} -> {update.current} (default recipe)",
        f"  first build with the new kernel (reads its package)   {update.first.seconds:6.2f} s"
        f"  (best of {len(update.first.runs)}, the cache reset to before the update each time)",
        f"  rebuild, packages read (goal <= {REBUILD_GOAL:.1f} s)             "
        f"{update.rebuild.seconds:6.2f} s  {verdict}",
        f"  archives compressed afresh by the update: {update.recompressed} of 3; "
        f"rebuild identical to the first: {'yes' if update.identical else 'NO'}",
        f"  rebuild steps: {steps}",
    ]


def main() -> None:
    print(machine())
    points = level_curve(default_archives())
    chosen = choose_level(points)
    print("\n".join(curve_lines(points, chosen)))
    agrees = "agrees" if chosen.level == DEFAULT_COMPRESSION_LEVEL else "DISAGREES"
    print(f"rule's level {chosen.level}; recipe default {DEFAULT_COMPRESSION_LEVEL}: {agrees}")
    print()
    with scratch("kdump-update.") as work:
        print("\n".join(update_lines(kernel_update(work))))


if __name__ == "__main__":
    main()
