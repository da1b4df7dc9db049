"""docs/' makedumpfile x kernel tables are the stored measurements, which carry their evidence.

bench/evidence/makedumpfile-matrix.json is written by `python -m
bench.makedumpfile_matrix` from the vmcores `bench.vmcore_capture` saved;
docs/makedumpfile.md must hold exactly the tables it prints for the store.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bench.makedumpfile_matrix import RESULTS, page_stats
from bench.makedumpfile_roots import RELEASES
from bench.makedumpfile_table import KDUMP_TOOLS, UNSUPPORTED, tables
from bench.vmcore_capture import GUESTS
from builder.image.makedumpfile import LATEST_KERNEL, kernel_numbers
from tests.support.paths import REPO

DOC = REPO / "docs" / "makedumpfile.md"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
CLASSES = ("Pages filled with zero", "Non-private cache pages", "Private cache pages",
           "User process data pages", "Free pages", "Hwpoison pages", "Offline pages")  # fmt: skip


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(RESULTS.read_text())
    return stored


def test_the_docs_hold_the_stored_tables(results: dict[str, Any]) -> None:
    regenerate = "print them: python -m bench.makedumpfile_matrix --stored"
    doc = DOC.read_text()
    for table in tables(results):
        assert table in doc, regenerate


def test_every_vmcore_is_tied_to_its_boot(results: dict[str, Any]) -> None:
    assert sorted(results["vmcores"]) == sorted(GUESTS)
    for label, vmcore in results["vmcores"].items():
        assert SHA256.match(vmcore["vmcore_sha256"]), label
        assert SHA256.match(vmcore["console_sha256"]), label
        assert vmcore["qemu_command"][0].startswith("qemu-system-"), label
        assert vmcore["recipe_changes"]["dump"] == {"collector": "copy"}, label  # nothing excluded
        assert any("kdump: dump saved to" in line for line in vmcore["decisive"]), label
        assert any(line.startswith("workload: ") for line in vmcore["decisive"]), label
        assert vmcore["kernel_packages"], label


def test_every_release_ran_on_every_vmcore(results: dict[str, Any]) -> None:
    assert sorted(results["makedumpfiles"]) == sorted(RELEASES)
    for release, root in results["makedumpfiles"].items():
        assert any(package.startswith("makedumpfile ") for package in root["packages"]), release
    for label in GUESTS:
        for release, root in results["makedumpfiles"].items():
            done = {run["compression"] for run in results["runs"]
                    if (run["vmcore"], run["makedumpfile"]) == (label, release)}  # fmt: skip
            assert {"dry-run", KDUMP_TOOLS, *root["compressions"]} <= done, (label, release)


def test_each_run_keeps_its_command_and_figures(results: dict[str, Any]) -> None:
    for run in results["runs"]:
        command = " ".join(run["command"])
        assert f"-d {results['level']} $VMCORES/{run['vmcore']}.vmcore" in command, command
        if run["compression"] == "dry-run":
            assert "--dry-run --show-stats" in command
            stats = run["stats"]
            excluded = sum(stats[key] for key in CLASSES)
            assert excluded == stats["Excluded pages"], run
            assert stats["Excluded pages"] + stats["Remaining pages"] == stats["Original pages"]
        else:
            assert run["size"] > 0 and run["cpu_seconds"] >= 0, run
            # Each written dump gave the crash's log back (the flattened stream is not read).
            assert run["dmesg_readable"] is (None if run["compression"] == KDUMP_TOOLS else True)


def test_the_warning_is_there_exactly_when_the_table_says_so(results: dict[str, Any]) -> None:
    """makedumpfile's own warning agrees with builder/image/makedumpfile.py's LATEST_KERNEL."""
    for run in results["runs"]:
        version = results["makedumpfiles"][run["makedumpfile"]]["version"]
        found = re.search(r"version (\d+)\.(\d+)\.(\d+)", version)
        assert found is not None
        latest = LATEST_KERNEL[(int(found[1]), int(found[2]), int(found[3]))]
        kernel = kernel_numbers(results["vmcores"][run["vmcore"]]["kernel"])
        assert kernel is not None
        assert (UNSUPPORTED in run["said"]) == (kernel > latest), run


def test_page_stats_reads_a_real_report_layout() -> None:
    report = "Original pages  : 0x000000000003730d\n  Excluded pages   : 0x000000000002f9a3\n"
    assert page_stats(report) == {"Original pages": 0x3730D, "Excluded pages": 0x2F9A3}
    assert page_stats("Original pages : lots\n") == {}
