"""The loaders' boot cost, from the guest's timing lines: runs, medians, ratios, the docs section.

Pure: console lines in, figures and Markdown out, so tests/unit/test_loader_cost.py
checks docs/performance.md against bench/evidence/loader-cost.json without a boot.
`bench.loader_cost` makes the lines and the store.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The three loaders, in the order each round runs them.
TOOLS = ("kdump-load", "kdump-build", "kexec-tools")
PYTHON_GOAL = 20.0  # kdump-load at least 20x faster than `kdump-build load`
KEXEC_TOOLS_GOAL = 1.0  # and no slower than kexec-tools' `kexec -p`
HEADING = "## Boot cost of the loaders (kdump-load, kdump-build load, kexec -p)"
# The guest writes "loader-cost: TOOL ROUND start|loaded|failed" to /dev/kmsg; the
# kernel stamps it (printk time, microseconds); `dmesg | sed 's/^/timing: /'` prints it.
MARK = re.compile(
    r"^timing: \[\s*(\d+\.\d+)\] loader-cost: (" + "|".join(TOOLS) + r") (\d+) "
    r"(start|loaded|failed)$"
)


@dataclass(frozen=True)
class Run:
    """One load: which loader, which round, start to loaded (ms), whether it loaded."""

    tool: str
    round: int
    milliseconds: float
    loaded: bool

    def record(self) -> dict[str, object]:
        return {"tool": self.tool, "round": self.round, "milliseconds": self.milliseconds,
                "loaded": self.loaded}  # fmt: skip


def parse_runs(lines: Sequence[str]) -> list[Run]:
    """Each start with the end that follows it, as a run; a start without an end is an error.

    >>> parse_runs(["timing: [   12.500000] loader-cost: kdump-load 0 start",
    ...             "timing: [   12.503250] loader-cost: kdump-load 0 loaded"])
    [Run(tool='kdump-load', round=0, milliseconds=3.25, loaded=True)]
    """
    started: dict[tuple[str, int], float] = {}
    runs = []
    for line in lines:
        found = MARK.match(line.rstrip("\r"))
        if found is None:
            continue
        stamp, key = float(found[1]), (found[2], int(found[3]))
        if found[4] == "start":
            started[key] = stamp
            continue
        if key not in started:
            raise ValueError(f"{key[0]} round {key[1]}: '{found[4]}' without a start")
        elapsed = round((stamp - started.pop(key)) * 1000, 3)
        runs.append(Run(key[0], key[1], elapsed, found[4] == "loaded"))
    if started:
        raise ValueError(f"started but never ended: {sorted(started)}")
    return runs


def medians(runs: Sequence[Run], warmup: int) -> dict[str, float]:
    """Each loader's median over the rounds after the `warmup` first ones.

    >>> medians([Run("kdump-load", 0, 90.0, True), Run("kdump-load", 1, 4.0, True),
    ...          Run("kdump-load", 2, 6.0, True)], warmup=1)
    {'kdump-load': 5.0}
    """
    timed: dict[str, list[float]] = {}
    for run in runs:
        if run.round >= warmup:
            timed.setdefault(run.tool, []).append(run.milliseconds)
    return {tool: statistics.median(times) for tool, times in timed.items()}


@dataclass(frozen=True)
class Ratios:
    """kdump-build load's median over kdump-load's (goal >= 20), kdump-load's over
    kexec -p's (goal <= 1.0)."""

    python: float
    kexec_tools: float

    @property
    def python_met(self) -> bool:
        return self.python >= PYTHON_GOAL

    @property
    def kexec_tools_met(self) -> bool:
        return self.kexec_tools <= KEXEC_TOOLS_GOAL


def ratios(middle: Mapping[str, float]) -> Ratios:
    ours = middle["kdump-load"]
    return Ratios(middle["kdump-build"] / ours, ours / middle["kexec-tools"])


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goal_rows(evidence: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(goal, measured, anchor, verdict) of the two goals, as bench/report.py's table has them."""
    runs = [Run(**run) for run in evidence["runs"]]
    middle = medians(runs, evidence["warmup_rounds"])
    got = ratios(middle)
    rounds = evidence["rounds"]
    return [
        (f"20.4 `kdump-load` vs `kdump-build load`, start to loaded (median of {rounds} "
         f"rounds, one guest)", f"{middle['kdump-load']:.1f} ms vs {middle['kdump-build']:.1f} "
         f"ms: {got.python:.1f}x faster", f">= {PYTHON_GOAL:.0f}x", _verdict(got.python_met)),
        (f"20.4 `kdump-load` vs kexec-tools' `kexec -p` (median of {rounds} rounds, one guest)",
         f"{middle['kdump-load']:.1f} ms vs {middle['kexec-tools']:.1f} ms: "
         f"{got.kexec_tools:.2f}x the time", f"<= {KEXEC_TOOLS_GOAL:.1f}x",
         _verdict(got.kexec_tools_met)),
    ]  # fmt: skip


def runs_table(evidence: Mapping[str, Any]) -> list[str]:
    """Every run's milliseconds, a row per round; warm-up rounds marked."""
    by_key = {(run["tool"], run["round"]): run for run in evidence["runs"]}
    lines = ["| round | " + " | ".join(TOOLS) + " |", "|---|" + "---|" * len(TOOLS)]
    for number in range(evidence["warmup_rounds"] + evidence["rounds"]):
        label = f"{number} (warm-up)" if number < evidence["warmup_rounds"] else str(number)
        cells = []
        for tool in TOOLS:
            run = by_key[(tool, number)]
            cells.append(f"{run['milliseconds']:.1f} ms" + ("" if run["loaded"] else " FAILED"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def section(evidence: Mapping[str, Any]) -> str:
    """The section docs/performance.md holds for the stored run (ends with a newline)."""
    rows = goal_rows(evidence)
    table = ["| goal | measured | anchor / goal | verdict |", "|---|---|---|---|",
             *[f"| {' | '.join(row)} |" for row in rows]]  # fmt: skip
    lines = [
        HEADING,
        "",
        f"`{evidence['command']}` on {evidence['date']} ({evidence['machine']}). One "
        f"x86_64 TCG guest, {evidence['guest_kernel']} (the default recipe's kernel, booted "
        f"as the main kernel with `crashkernel=192M`), loads the default recipe's capture "
        f"{evidence['warmup_rounds'] + evidence['rounds']} times with each loader, "
        f"alternating in each round: the static `kdump-load OUTDIR` "
        f"(sha256 {evidence['kdump_load_sha256'][:16]}...), `kdump-build load OUTDIR` "
        f"(the venv's entry point, chrooted into the host root over 9p) and "
        f"{evidence['kexec_tools']}'s `kexec -p` with the same kernel, initrd and command line; "
        "each load is undone before the next. The first round is a warm-up (it reads "
        "the files over 9p into the guest's page cache) and stays out of the medians. "
        "All three loaders' figures come from this one guest and this one run, round by "
        "round, so a busier host slows all of them: compare the ratios, not the "
        "absolute times of two runs.",
        "",
        f"Clock: {evidence['clock']}",
        "",
        *table,
        "",
        "Every run, start to loaded:",
        "",
        *runs_table(evidence),
        "",
        "QEMU command ($WORK: the bench's scratch directory; "
        f"{evidence['qemu']}; console sha256 {evidence['console_sha256'][:16]}...):",
        "",
        "```",
        " ".join(evidence["qemu_command"]),
        "```",
        "",
        "The guest's console lines and the raw kernel time stamps are in "
        "[bench/evidence/loader-cost.json](../bench/evidence/loader-cost.json).",
    ]
    return "\n".join(lines) + "\n"


def replace_section(document: str, new: str, heading: str = HEADING) -> str:
    """`document` with its section under `heading` (the loader cost's by default) replaced
    by `new`, which is appended if there is none.

    >>> doc = replace_section(f"# P\\n\\n{HEADING}\\nold\\n\\n## Next\\nkept\\n", "NEW\\n")
    >>> doc.splitlines()
    ['# P', '', 'NEW', '', '## Next', 'kept']
    >>> replace_section("# P\\n", "NEW\\n")
    '# P\\n\\nNEW\\n'
    """
    lines = document.splitlines(keepends=True)
    starts = [index for index, line in enumerate(lines) if line.rstrip("\n") == heading]
    if not starts:
        return document.rstrip("\n") + "\n\n" + new
    start = starts[0]
    after = [index for index in range(start + 1, len(lines)) if lines[index].startswith("## ")]
    end = after[0] if after else len(lines)
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + new + ("\n" + tail if tail else "")
