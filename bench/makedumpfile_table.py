"""The Markdown tables docs/makedumpfile.md shows, made from the stored matrix results.

Pure: results in, text out, so the docs can be checked against the store
(tests/unit/test_makedumpfile_matrix.py) without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MB = 1_000_000  # decimal, as the and du's figures
PAGE_CLASSES = (
    ("zero", ("Pages filled with zero",)),
    ("cache", ("Non-private cache pages", "Private cache pages")),
    ("user", ("User process data pages",)),
    ("free", ("Free pages",)),
)
UNSUPPORTED = "The kernel version is not supported."
KDUMP_TOOLS = "kdump-tools"  # Debian's kdump-tools command: -F -c, the flattened zlib stream


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
    compressions = ("none", "lzo", "zlib", "zstd", KDUMP_TOOLS)
    lines = ["| kernel | makedumpfile | " + " | ".join(compressions) + " |",
             "|" + "---|" * (2 + len(compressions))]  # fmt: skip
    for dry in _runs(results, "dry-run"):
        writes = _writes(results, dry)
        cells = [_cell(writes.get(name)) for name in compressions]
        lines.append(_pair(results, dry) + " " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _break_even(zstd: Mapping[str, Any], lzo: Mapping[str, Any]) -> str:
    """The write speed below which zstd's smaller dump saves more time than its extra CPU
    costs: (lzo size - zstd size) / (zstd CPU - lzo CPU), in MB/s."""
    extra_cpu = zstd["cpu_seconds"] - lzo["cpu_seconds"]
    if extra_cpu <= 0:
        return "always"
    return f"{(lzo['size'] - zstd['size']) / MB / extra_cpu:.0f} MB/s"


def ratios(results: Mapping[str, Any]) -> str:
    """zstd and lzo against kdump-tools' dump (size) and each other (CPU), where zstd is in."""
    header = ("zstd size / kdump-tools size", "lzo size / kdump-tools size", "zstd CPU / lzo CPU",
              "zstd CPU / zlib CPU", "zstd ends first below")  # fmt: skip
    lines = [
        "| kernel | makedumpfile | " + " | ".join(header) + " |",
        "|---|---|---|---|---|---|---|",
    ]
    for dry in _runs(results, "dry-run"):
        writes = _writes(results, dry)
        if "zstd" not in writes:
            continue
        zstd, zlib, lzo, tools = (writes[name] for name in ("zstd", "zlib", "lzo", KDUMP_TOOLS))
        cells = [
            f"{zstd['size'] / tools['size']:.3f}",
            f"{lzo['size'] / tools['size']:.3f}",
            f"{zstd['cpu_seconds'] / lzo['cpu_seconds']:.2f}",
            f"{zstd['cpu_seconds'] / zlib['cpu_seconds']:.2f}",
            _break_even(zstd, lzo),
        ]
        lines.append(_pair(results, dry) + " " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables(results: Mapping[str, Any]) -> tuple[str, str, str]:
    """The three tables docs/makedumpfile.md holds: exclusions, sizes and times, ratios."""
    return exclusions_table(results), sizes_table(results), ratios(results)
