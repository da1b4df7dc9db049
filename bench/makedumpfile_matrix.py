"""Every Debian makedumpfile against every kernel's full vmcore: exclusions, size, time.

    python -m bench.makedumpfile_matrix            # measure, store, print the table
    python -m bench.makedumpfile_matrix --stored   # print the stored table

Reads the full ELF vmcores `bench.vmcore_capture` saved (one per kernel, 1 GiB
x86_64 guests with page cache, user pages and non-zero free pages). Each
release's makedumpfile runs from its own Debian packages (the binary and its
library closure, through that release's ld.so with --library-path), offline
on each vmcore (the vmcoreinfo is in the vmcore's ELF notes, no vmlinux
needed): a `-d 31 --dry-run --show-stats` run for the excluded pages per
class, then real writes at -d 31 for each compression the binary has, timed
(wall and CPU seconds, best of REPEATS). The results, with the vmcores'
sha256s, the package versions, the exact commands and the decisive lines of
each run, go to bench/evidence/makedumpfile-matrix.json; docs/makedumpfile.md
holds the tables `tables()` prints from it (tests/unit/test_makedumpfile_matrix.py
checks that they agree).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.makedumpfile_roots import RELEASES, MakedumpfileRoot, prepare_root
from bench.makedumpfile_table import KDUMP_TOOLS, tables
from bench.vmcore_capture import GUESTS, VMCORES
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "evidence" / "makedumpfile-matrix.json"
REPEATS = 3
LEVEL = "31"
# makedumpfile's page-compression flags; "none" writes the kdump format uncompressed.
COMPRESSIONS = {"none": (), "lzo": ("-l",), "zlib": ("-c",), "zstd": ("-z",)}
# Debian's kdump-tools (1:1.8.1 in Debian 12, kdump-config): `makedumpfile -F -c -d 31
# /proc/vmcore`, the flattened stream on stdout, through `cat` when KDUMP_COMPRESSION is
# unset; run with each release's makedumpfile.
# The --show-stats lines, by the page class they count.
STAT = re.compile(
    r"^\s*(Pages filled with zero|Non-private cache pages|Private cache pages"
    r"|User process data pages|Free pages|Hwpoison pages|Offline pages|Excluded pages"
    r"|Remaining pages|Total pages|Write bytes|Original pages)\s*:\s*(0x[0-9a-fA-F]+|\d+)\s*$"
)
# What makedumpfile says about what it could not do (progress lines are not kept).
NOTABLE = re.compile(r"(?i)not supported|warning|can't|cannot|fail|incomplete|unknown|error")


def page_stats(output: str) -> dict[str, int]:
    """The page counts of a --show-stats report, by class.

    >>> page_stats("  Free pages              : 0x0000000000001f00\\nTotal pages : 0x40000\\n")
    {'Free pages': 7936, 'Total pages': 262144}
    """
    stats: dict[str, int] = {}
    for line in output.splitlines():
        found = STAT.match(line)
        if found is not None:
            stats[found[1]] = int(found[2], 0)
    return stats


def notable_lines(output: str) -> list[str]:
    """makedumpfile's warnings and complaints, without its progress lines, each once.

    >>> notable_lines("Copying data : [ 10.0 %]\\rThe kernel version is not supported.\\n")
    ['The kernel version is not supported.']
    """
    lines = [part.strip() for line in output.splitlines() for part in line.split("\r")]
    kept = [line for line in lines if NOTABLE.search(line) and not line.startswith("Copying data")]
    return list(dict.fromkeys(kept))


def _shown(command: Sequence[str], places: Mapping[str, str]) -> list[str]:
    shown = []
    for word in command:
        for path, name in places.items():
            word = word.replace(path, name)
        shown.append(word)
    return shown


@dataclass(frozen=True)
class Timed:
    """One makedumpfile process: wall and CPU seconds (user + system), its peak RSS, its
    messages (standard error, and standard output unless that was the dump)."""

    wall: float
    cpu: float
    max_rss_kib: int
    said: str
    returncode: int


def _timed(command: Sequence[str], stdout: Path | None, scratch: Path) -> Timed:
    """Run `command` with its own resource usage (wait4); stdout to `stdout` if given.

    The peak RSS comes from GNU time, which runs `command` itself: wait4's
    ru_maxrss of a child forked from Python counts Python's own pages.
    """
    messages, peak = scratch / "messages", scratch / "peak-rss"
    timer = ["/usr/bin/time", "--quiet", "-o", str(peak), "-f", "%M"]
    with open(stdout or messages, "wb") as out, open(messages, "ab") as err:
        start = time.perf_counter()
        process = subprocess.Popen([*timer, *command], stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    said = messages.read_text(errors="replace")
    messages.unlink()
    max_rss = int(peak.read_text().split()[-1])
    return Timed(wall, usage.ru_utime + usage.ru_stime, max_rss, said, process.returncode)


def _crash_log_read(root: MakedumpfileRoot, dump: Path, scratch: Path) -> bool:
    """The written dump is whole enough for the same makedumpfile to read the crash from it."""
    log = scratch / "dmesg.txt"
    log.unlink(missing_ok=True)
    command = [*root.command(), "--dump-dmesg", str(dump), str(log)]
    result = subprocess.run(command, capture_output=True, check=False)
    said = log.read_text(errors="replace") if log.exists() else ""
    log.unlink(missing_ok=True)
    return result.returncode == 0 and "sysrq triggered crash" in said


def measure_one(
    root: MakedumpfileRoot, vmcore: Path, compression: str, scratch: Path
) -> dict[str, object]:
    """One write (or the dry run: compression "dry-run") of `vmcore` by `root`'s makedumpfile."""
    output = scratch / "dump"
    flags = {"dry-run": ("--dry-run", "--show-stats"), KDUMP_TOOLS: ("-F", "-c")}.get(
        compression, COMPRESSIONS.get(compression, ())
    )
    command = [*root.command(), *flags, "-d", LEVEL, str(vmcore)]
    flattened = compression == KDUMP_TOOLS
    command += [] if flattened else [str(output)]
    best: Timed | None = None
    size = 0
    for _ in range(1 if compression == "dry-run" else REPEATS):
        output.unlink(missing_ok=True)
        run = _timed(command, output if flattened else None, scratch)
        if run.returncode != 0:
            sys.exit(f"failed ({run.returncode}): {' '.join(command)}\n{run.said[-2000:]}")
        size = output.stat().st_size if output.exists() else 0
        best = run if best is None or run.cpu < best.cpu else best
    readable = _crash_log_read(root, output, scratch) if size and not flattened else None
    output.unlink(missing_ok=True)
    assert best is not None
    places = {str(root.directory): "$ROOT", str(vmcore.parent): "$VMCORES", str(scratch): "$OUT"}
    return {
        "compression": compression,
        "command": _shown(command, places) + ([">", "$OUT/dump"] if flattened else []),
        "size": size,
        "wall_seconds": round(best.wall, 2),
        "cpu_seconds": round(best.cpu, 2),
        "max_rss_kib": best.max_rss_kib,
        "dmesg_readable": readable,
        "stats": page_stats(best.said),
        "said": notable_lines(best.said),
    }


def measure(labels: Sequence[str]) -> dict[str, Any]:
    """Every release's makedumpfile on every saved vmcore."""
    vmcores = {}
    for label in labels:
        record = VMCORES / f"{label}.json"
        if not record.exists():
            sys.exit(f"{record}: no vmcore for {label}; run python -m bench.vmcore_capture {label}")
        vmcores[label] = json.loads(record.read_text())
    roots = {release: prepare_root(release) for release in RELEASES}
    runs = []
    with tempfile.TemporaryDirectory(prefix="mdf-", dir=VMCORES) as scratch:
        for label in labels:
            vmcore = VMCORES / f"{label}.vmcore"
            for release, root in roots.items():
                for compression in ("dry-run", *root.compressions, KDUMP_TOOLS):
                    run = measure_one(root, vmcore, compression, Path(scratch))
                    runs.append({"vmcore": label, "makedumpfile": release, **run})
                    print(f"{label} {release} {compression}: {run['size']:,} bytes "
                          f"{run['wall_seconds']} s", flush=True)  # fmt: skip
    return {
        "level": int(LEVEL),
        "repeats": REPEATS,
        "machine": f"{os.cpu_count()} CPUs shared with other work",
        "timing": "the repeat with the least CPU time (user + system) of makedumpfile",
        "vmcores": vmcores,
        "makedumpfiles": {release: root.record() for release, root in roots.items()},
        "runs": runs,
    }


def main(argv: list[str]) -> None:
    if argv == ["--stored"]:
        print("\n".join(tables(json.loads(RESULTS.read_text()))), end="")
        return
    if argv:
        sys.exit("usage: python -m bench.makedumpfile_matrix [--stored]")
    results = measure(list(GUESTS))
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(tables(results)), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
