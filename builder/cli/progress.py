"""What a build shows on stderr while it runs.

On a terminal: a line per finished step, and live bars for the long ones
(fetch, read, compress: bytes, what is going on, an ETA), drawn by rich,
which typer brings along (imported only then). Elsewhere, with --verbose:
the same step lines and a plain progress line at most every few seconds.
Nothing with --quiet or --json.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Iterator
from typing import Any

import typer

from builder.image.pipeline import Steps, Tick

PLAIN_INTERVAL = 2.0  # seconds between plain progress lines of one step


def _step_line(step: str, seconds: float) -> str:
    return f"  {step:<24} {seconds:6.2f} s"


class PlainProgress:
    """Step lines and occasional progress lines, for logs."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def step(self, step: str, seconds: float) -> None:
        typer.echo(_step_line(step, seconds), err=True)

    def tick(self, tick: Tick) -> None:
        now = time.monotonic()
        if now - self.last.get(tick.step, 0.0) < PLAIN_INTERVAL and tick.done < tick.total:
            return
        self.last[tick.step] = now
        typer.echo(
            f"  {tick.step}: {tick.done / 2**20:.1f} of {tick.total / 2**20:.1f} MiB"
            f"{f' ({tick.detail})' if tick.detail else ''}",
            err=True,
        )


class LiveProgress:
    """Live bars with an ETA for the long steps, and a printed line for every finished step."""

    def __init__(self) -> None:
        # Imported here: at start-up, rich.progress would cost ~58 ms.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("  {task.description:<16}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def step(self, step: str, seconds: float) -> None:
        task = self.tasks.pop(step, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.console.print(_step_line(step, seconds), highlight=False)

    def tick(self, tick: Tick) -> None:
        task = self.tasks.get(tick.step)
        if task is None:
            task = self.tasks[tick.step] = self.progress.add_task(
                tick.step, total=tick.total, detail=""
            )
        self.progress.update(task, completed=tick.done, total=tick.total, detail=tick.detail)


@contextlib.contextmanager
def build_steps(quiet: bool, verbose: bool) -> Iterator[Steps]:
    """The `Steps` of a build, reporting on stderr as the mode and the terminal say."""
    # Live bars need rich: typer 0.15 and later bring it, Debian 12's typer 0.7 does not.
    terminal = sys.stderr.isatty() and importlib.util.find_spec("rich") is not None
    if quiet or not (verbose or terminal):
        yield Steps()
        return
    shown: PlainProgress | LiveProgress = LiveProgress() if terminal else PlainProgress()
    steps = Steps(shown.step, progress=shown.tick)
    if isinstance(shown, LiveProgress):
        with shown.progress:
            yield steps
    else:
        yield steps
