"""The long fuzz campaign: every target of tests/support/fuzz.py under atheris (libFuzzer).

Coverage-guided, one process per target, each starting from the target's
real seeds as its corpus (the first byte of an input picks the seed's label:
which sysfs file, which package format). An input that raises anything but a
typed error is a crash: libFuzzer stops that target and saves the input as
crash-* in the work directory. Prints per target the executions, the
seconds, how the inputs ended (ok or which error) and any crash.

atheris is not a test dependency; install it into the venv first:

    .venv/bin/pip install atheris
    .venv/bin/python -m bench.fuzz_campaign [--runs-per-target 100000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.support import fuzz
from tests.support.paths import REPO

# libFuzzer ends the process with exit(): the counts are written as they go.
REPORT_EVERY = 200


def worker(index: int, runs: int, corpus: Path, counts: Path) -> None:
    """Run one target under atheris; its outcome counts go to `counts` as JSON."""
    atheris = importlib.import_module("atheris")  # not a test dependency: untyped here

    target = fuzz.TARGETS[index]
    seeds = target.seeds()
    labels = sorted({label for label, _ in seeds})
    corpus.mkdir(parents=True, exist_ok=True)
    for number, (label, data) in enumerate(seeds):
        (corpus / f"seed-{number}").write_bytes(bytes([labels.index(label)]) + data)
    outcomes: Counter[str] = Counter()

    def one_input(data: bytes) -> None:
        if not data:
            return
        outcomes[fuzz.run_one(target, labels[data[0] % len(labels)], data[1:])] += 1
        if sum(outcomes.values()) % REPORT_EVERY == 0:
            counts.write_text(json.dumps(outcomes))

    largest = max(len(data) for _, data in seeds) + 1
    argv = [sys.argv[0], f"-runs={runs}", f"-max_len={largest + 4096}", "-timeout=20",
            "-rss_limit_mb=4096", str(corpus)]  # fmt: skip
    atheris.instrument_all()
    atheris.Setup(argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        counts.write_text(json.dumps(outcomes))


@dataclass
class Row:
    """What one target's run gave."""

    target: str
    exit: int
    libfuzzer: str
    outcomes: dict[str, int]  # how the inputs ended (counted every REPORT_EVERY)
    crashes: list[str]
    seconds: float


def _run_target(index: int, runs: int, work: Path) -> Row:
    directory = work / f"target-{index}"
    directory.mkdir()
    counts = directory / "counts.json"
    start = time.monotonic()
    command = [sys.executable, "-m", "bench.fuzz_campaign", "--worker", str(index),
               "--runs-per-target", str(runs), "--work", str(directory)]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False,
                            env=environment)  # fmt: skip
    done = [line for line in result.stderr.splitlines() if line.startswith("Done ")]
    last = done[-1] if done else " | ".join(result.stderr.strip().splitlines()[-3:])
    outcomes = json.loads(counts.read_text()) if counts.exists() else {}
    crashes = sorted(str(path) for path in directory.glob("crash-*"))
    return Row(fuzz.TARGETS[index].name, result.returncode, last, outcomes, crashes,
               round(time.monotonic() - start, 1))  # fmt: skip


def _executions(row: Row) -> int:
    """libFuzzer's own count ("Done N runs in S second(s)")."""
    words = row.libfuzzer.split()
    return int(words[1]) if row.libfuzzer.startswith("Done ") else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-target", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.runs_per_target, args.work / "corpus", args.work / "counts.json")
        return 0
    keep = Path(tempfile.mkdtemp(prefix="kdump-build-fuzz-"))
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda i: _run_target(i, args.runs_per_target, keep),
                             range(len(fuzz.TARGETS))))  # fmt: skip
    executions = sum(_executions(row) for row in rows)
    print(json.dumps({"executions": executions, "targets": [asdict(row) for row in rows]},
                     indent=2))  # fmt: skip
    failed = any(row.crashes or row.exit != 0 for row in rows)
    print(f"corpora and any crash inputs are in {keep}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
