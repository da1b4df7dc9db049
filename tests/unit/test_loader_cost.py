"""docs/performance.md's loader boot cost is the stored run, which carries its evidence.

bench/evidence/loader-cost.json is written by `python -m bench.loader_cost --write`
from one guest's console; docs/performance.md must hold exactly the section
`bench.loader_cost_table.section` makes from it, and its runs must be the ones
the stored console lines give.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bench.loader_cost import APPEND, RESULTS
from bench.loader_cost_table import TOOLS, Run, parse_runs, section
from tests.support.paths import REPO

DOC = REPO / "docs" / "performance.md"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def evidence() -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(RESULTS.read_text())
    return stored


def test_the_doc_holds_the_stored_section(evidence: dict[str, Any]) -> None:
    assert section(evidence) in DOC.read_text(), "rerun: python -m bench.loader_cost --write"


def test_the_runs_are_the_stored_console_lines(evidence: dict[str, Any]) -> None:
    lines = evidence["console_lines"]
    runs = parse_runs(lines)
    assert [run.record() for run in runs] == evidence["runs"]
    rounds = evidence["warmup_rounds"] + evidence["rounds"]
    assert sorted((run.tool, run.round) for run in runs) == sorted(
        (tool, number) for tool in TOOLS for number in range(rounds)
    )
    for run in runs:
        # Each loader said it loaded, and the kernel agreed before the unload.
        assert run.loaded and run.milliseconds > 0, run
        assert f"cost: {run.tool} {run.round} crash_loaded=1" in lines, run
    assert any(line.startswith("loaded 6 segments with kexec_load") for line in lines)


def test_the_boot_is_named(evidence: dict[str, Any]) -> None:
    command = evidence["qemu_command"]
    assert command[0] == "qemu-system-x86_64" and command[1:3] == ["-accel", "tcg"]
    assert command[command.index("-append") + 1] == APPEND
    assert "crashkernel=192M" in APPEND and "printk.devkmsg=on" in APPEND
    assert evidence["guest_kernel"] == evidence["capture_kernel"]
    assert f"cost: guest kernel {evidence['guest_kernel']}" in evidence["console_lines"]
    assert evidence["kexec_tools"].startswith("kexec-tools ")
    assert SHA256.match(evidence["console_sha256"]) and SHA256.match(evidence["kdump_load_sha256"])


def test_a_start_without_its_end_is_refused() -> None:
    start = "timing: [   12.500000] loader-cost: kexec-tools 3 start"
    end = "timing: [   12.600000] loader-cost: kexec-tools 3 failed"
    assert parse_runs([start, end]) == [Run("kexec-tools", 3, 100.0, False)]
    with pytest.raises(ValueError, match=r"never ended: \[\('kexec-tools', 3\)\]"):
        parse_runs([start])
    with pytest.raises(ValueError, match="kexec-tools round 3: 'failed' without a start"):
        parse_runs([end])
