"""The Markdown tables docs/makedumpfile.md shows, made from the stored matrix results.

Pure: results in, text out, so the docs can be checked against the store
(tests/unit/test_makedumpfile_matrix.py) without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MB = 1_000_000  # decimal, as the and du's figures
PAGE_CLASSES = (
    ("zero", ("Pages filled with zero",)),
    ("cache", ("Non-private cache pages", "Private cache pages")),
    ("user", ("User process data pages",)),
    ("free", ("Free pages",)),
)
UNSUPPORTED = "The kernel version is not supported."


def _runs(results: Mapping[str, Any], compression: str) -> list[Mapping[str, Any]]:
    return [run for run in results["runs"] if run["compression"] == compression]


def _version(results: Mapping[str, Any], release: str) -> str:
    """`1.7.2 (bookworm)` from the stored `makedumpfile -v` line."""
    line = str(results["makedumpfiles"][release]["version"])
    return f"{line.split('version ')[1].split()[0]} ({release})"


def _pair(results: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    kernel = results["vmcores"][run["vmcore"]]["kernel"]
    return f"| {kernel} | {_version(results, run['makedumpfile'])} |"


def exclusions_table(results: Mapping[str, Any]) -> str:
    """Pages excluded per class at -d 31 (--dry-run --show-stats), per kernel and makedumpfile."""
    header = ["kernel", "makedumpfile", "warns", *[name for name, _ in PAGE_CLASSES],
              "kept pages", "kept of RAM"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in _runs(results, "dry-run"):
        stats = run["stats"]
        counts = [sum(stats.get(key, 0) for key in keys) for _, keys in PAGE_CLASSES]
        ram = stats["Original pages"]
        warned = "yes" if UNSUPPORTED in run["said"] else "no"
        cells = [warned, *[f"{count:,}" for count in counts], f"{stats['Remaining pages']:,}",
                 f"{100 * stats['Remaining pages'] / ram:.1f} %"]  # fmt: skip
        lines.append(_pair(results, run) + " " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _writes(results: Mapping[str, Any], dry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The runs of the same vmcore and makedumpfile as the dry run `dry`, by compression."""
    pair = (dry["vmcore"], dry["makedumpfile"])
    return {run["compression"]: run for run in results["runs"]
            if (run["vmcore"], run["makedumpfile"]) == pair}  # fmt: skip


def _cell(run: Mapping[str, Any] | None) -> str:
    if run is None:
        return "not built in"
    return f"{run['size'] / MB:.1f} MB, {run['cpu_seconds']:.2f} s"


def sizes_table(results: Mapping[str, Any]) -> str:
    """Dump size and CPU seconds of each -d 31 write, per compression."""
    compressions = ("none", "lzo", "zlib", "zstd")
    lines = ["| kernel | makedumpfile | " + " | ".join(compressions) + " |",
             "|" + "---|" * (2 + len(compressions))]  # fmt: skip
    for dry in _runs(results, "dry-run"):
        writes = _writes(results, dry)
        cells = [_cell(writes.get(name)) for name in compressions]
        lines.append(_pair(results, dry) + " " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ratios(results: Mapping[str, Any], releases: Sequence[str]) -> str:
    """zstd against zlib (size) and lzo (CPU time), per kernel and makedumpfile that has zstd."""
    header = ("zstd size / zlib size", "zstd CPU / lzo CPU", "zstd wall / lzo wall")
    lines = ["| kernel | makedumpfile | " + " | ".join(header) + " |", "|---|---|---|---|---|"]
    for dry in _runs(results, "dry-run"):
        if dry["makedumpfile"] not in releases:
            continue
        writes = _writes(results, dry)
        if "zstd" not in writes:
            continue
        zstd, zlib, lzo = writes["zstd"], writes["zlib"], writes["lzo"]
        cells = [
            f"{zstd['size'] / zlib['size']:.2f}",
            f"{zstd['cpu_seconds'] / lzo['cpu_seconds']:.2f}",
            f"{zstd['wall_seconds'] / lzo['wall_seconds']:.2f}",
        ]
        lines.append(_pair(results, dry) + " " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables(results: Mapping[str, Any]) -> str:
    """All three tables, as docs/makedumpfile.md holds them."""
    with_zstd = [release for release, root in results["makedumpfiles"].items()
                 if "zstd" in root["compressions"]]  # fmt: skip
    return "\n".join([exclusions_table(results), sizes_table(results), ratios(results, with_zstd)])
