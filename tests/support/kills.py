"""SIGKILL a writing kdump-build at random moments and check what is left.

Shared by the CI test (tests/unit/test_atomic.py, a few kills) and the long
campaign (`python -m bench.sigkill_campaign`, hundreds). An operation is a
real `kdump-build build` or `kdump-build layout` process onto one output
directory; every possible complete state of that directory is known in
advance by the sha256 of each file, so after a kill the directory must equal
exactly the state before the operation or the one after it. Kill moments are
drawn so most land while the process writes: the killer watches for the
staging directory to appear beside the output and kills a random fraction of
the typical write time later (and some kills land anywhere in the run).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from builder.atomic import STAGING_INFIX
from tests.support.paths import DATA, REPO

Tree = dict[str, str]  # relative path -> sha256 of its bytes ("<dir>" for a directory)
IOMEM = DATA / "sysfs" / "qemu-1g-crashkernel-192m" / "proc" / "iomem"
SYSFS = DATA / "sysfs" / "qemu-1g-crashkernel-192m"


def tree_digest(top: Path) -> Tree | None:
    """Every entry below `top` with the sha256 of its contents; None if `top` is missing."""
    if not top.exists():
        return None
    tree: Tree = {}
    for directory, dirs, files in os.walk(top):
        base = Path(directory)
        for name in dirs:
            tree[str((base / name).relative_to(top))] = "<dir>"
        for name in files:
            tree[str((base / name).relative_to(top))] = hashlib.sha256(
                (base / name).read_bytes()
            ).hexdigest()
    return tree


class Operation(Enum):
    """What a killed process was doing."""

    BUILD_A = "build A"
    BUILD_B = "build B"
    LAYOUT = "layout"


class Moment(Enum):
    """When the kill landed, as the killer saw it."""

    BEFORE_STAGING = "before the staging directory appeared"
    WHILE_STAGING = "while the staging directory existed"
    AFTER_EXIT = "after the process had finished (not a kill)"


@dataclass
class Tally:
    """What a campaign saw."""

    kills: int = 0
    moments: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    leftovers_seen: int = 0
    write_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


@dataclass
class Campaign:
    """One output directory, two recipes (A, B), and the states the directory may be in."""

    work: Path
    recipe_a: Path
    recipe_b: Path
    env: dict[str, str]
    states: dict[str, Tree] = field(default_factory=dict)
    write_seconds: float = 0.05
    run_seconds: float = 2.0

    @property
    def outdir(self) -> Path:
        return self.work / "out"

    def command(self, operation: Operation) -> list[str]:
        cli = [sys.executable, "-m", "builder.cli"]
        if operation is Operation.LAYOUT:
            return [*cli, "layout", str(self.outdir), "--iomem", str(IOMEM),
                    "--sysfs", str(SYSFS)]  # fmt: skip
        recipe = self.recipe_a if operation is Operation.BUILD_A else self.recipe_b
        return [*cli, str(recipe), "-o", str(self.outdir), "-q"]

    def run(self, operation: Operation) -> None:
        """One complete operation; it must succeed."""
        result = subprocess.run(self.command(operation), cwd=REPO, env=self.env,
                                capture_output=True, text=True, check=False)  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"{operation.value} failed: {result.stderr}")

    def prepare(self) -> None:
        """Learn every complete state by running each operation to its end."""
        for name, build in (("A", Operation.BUILD_A), ("B", Operation.BUILD_B)):
            start = time.monotonic()
            self.run(build)
            self.run_seconds = time.monotonic() - start
            self.states[name] = self._tree()
            self.run(Operation.LAYOUT)
            self.states[f"{name}+layout"] = self._tree()
        self.write_seconds = self._measure_write()

    def _tree(self) -> Tree:
        tree = tree_digest(self.outdir)
        assert tree is not None
        return tree

    def _measure_write(self) -> float:
        """How long the staging directory of a build exists (the window a kill must hit)."""
        process = self._start(Operation.BUILD_A)
        appeared = self._wait_for_staging(process, timeout=60)
        start = time.monotonic()
        while process.poll() is None and self.staging_entries():
            time.sleep(0.0005)
        process.wait()
        return max(time.monotonic() - start, 0.005) if appeared else 0.05

    def _start(self, operation: Operation) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(operation), cwd=REPO, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip

    def staging_entries(self) -> list[str]:
        prefix = f".{self.outdir.name}{STAGING_INFIX}"
        return [name for name in os.listdir(self.work) if name.startswith(prefix)]

    def _wait_for_staging(self, process: subprocess.Popen[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if self.staging_entries():
                return True
            time.sleep(0.0005)
        return False

    def expected_after(self, before: str, operation: Operation) -> str:
        if operation is Operation.LAYOUT:
            return before if before.endswith("+layout") else f"{before}+layout"
        return "A" if operation is Operation.BUILD_A else "B"

    def state_name(self) -> str | None:
        tree = tree_digest(self.outdir)
        return next((name for name, state in self.states.items() if state == tree), None)

    def kill_once(self, rng: random.Random, tally: Tally) -> None:
        """Start a random operation, SIGKILL it at a random moment, check the directory."""
        before = self.state_name()
        if before is None:  # after a failure already tallied: start again from A
            self.run(Operation.BUILD_A)
            before = "A"
        # Only operations that change the output: a kill then has two states to tell apart.
        operation = rng.choice(
            [op for op in Operation if self.expected_after(before, op) != before]
        )
        after = self.expected_after(before, operation)
        process = self._start(operation)
        moment = self._kill_at_random(process, rng)
        tally.kills += moment is not Moment.AFTER_EXIT
        tally.moments[moment.value] += 1
        leftovers = self.staging_entries()
        tally.leftovers_seen += bool(leftovers)
        now = self.state_name()
        if now is None or now not in (before, after):
            outcome = "BROKEN"
        else:
            outcome = "old" if now == before else "new"
        outcome = outcome if moment is not Moment.AFTER_EXIT else f"{outcome} (finished)"
        tally.outcomes[outcome] += 1
        if outcome == "BROKEN":
            tally.failures.append(
                f"kill {tally.kills}: {operation.value} from {before} {moment.value}: "
                f"the output matches no complete state: {tree_digest(self.outdir)}"
            )

    def _kill_at_random(self, process: subprocess.Popen[bytes], rng: random.Random) -> Moment:
        if rng.random() < 0.2:
            # Anywhere in the run, planning included.
            time.sleep(rng.uniform(0, self.run_seconds))
            seen = bool(self.staging_entries())
        else:
            seen = self._wait_for_staging(process, timeout=60)
            time.sleep(rng.uniform(0, self.write_seconds * 1.3))
        finished = process.poll() is not None
        if not finished:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if finished:
            return Moment.AFTER_EXIT
        return Moment.WHILE_STAGING if seen else Moment.BEFORE_STAGING

    def check_cleanup(self, tally: Tally) -> None:
        """A complete run after the kills leaves no staging entry behind."""
        before = self.state_name() or "A"
        operation = Operation.BUILD_B if before.startswith("A") else Operation.BUILD_A
        self.run(operation)
        if self.staging_entries():
            tally.failures.append(f"leftovers after a complete run: {self.staging_entries()}")
        if self.state_name() != self.expected_after(before, operation):
            tally.failures.append("a complete run after kills did not give its output")


def campaign(work: Path, recipes: Sequence[Path], kills: int, *, seed: int,
             env: dict[str, str] | None = None, cleanup_every: int = 10) -> Tally:  # fmt: skip
    """`kills` random SIGKILLs of builds and layouts of `recipes` (two) onto one directory.

    A process that finished before its kill landed is tallied apart and not counted.
    """
    recipe_a, recipe_b = recipes
    runner = Campaign(work, recipe_a, recipe_b, dict(env or os.environ))
    runner.prepare()
    rng = random.Random(seed)
    tally = Tally(write_seconds=runner.write_seconds)
    checked = 0
    while tally.kills < kills:
        runner.kill_once(rng, tally)
        if tally.kills >= checked + cleanup_every or tally.kills == kills:
            runner.check_cleanup(tally)
            checked = tally.kills
    return tally
