"""docs/' makedumpfile x kernel tables are the stored measurements, which carry their evidence.

bench/evidence/makedumpfile-matrix.json is written by `python -m
bench.makedumpfile_matrix` from the vmcores `bench.vmcore_capture` saved;
docs/makedumpfile.md must hold exactly the tables it prints for the store.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

from bench.makedumpfile_matrix import RESULTS, page_stats
from bench.makedumpfile_roots import RELEASES
from bench.makedumpfile_table import KDUMP_TOOLS, UNSUPPORTED, tables
from bench.recommended_capture import RESULTS as RECOMMENDED
from bench.recommended_capture import recommended_changes
from bench.vmcore_capture import GUESTS
from builder.image.makedumpfile import (
    LATEST_KERNEL,
    MEASURED_MISSES,
    KernelVersion,
    kernel_numbers,
)
from tests.support.paths import REPO

DOC = REPO / "docs" / "makedumpfile.md"
# The classes MEASURED_MISSES names, by their --show-stats line.
MISS_CLASSES = {"free": "Free pages", "user": "User process data pages"}
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


def _version(results: dict[str, Any], release: str) -> KernelVersion:
    found = re.search(r"version (\d+)\.(\d+)\.(\d+)", results["makedumpfiles"][release]["version"])
    assert found is not None
    return int(found[1]), int(found[2]), int(found[3])


def test_the_builds_measured_misses_are_the_stored_ones(results: dict[str, Any]) -> None:
    """A class is missed where a release excludes under a fifth of what the release
    that excludes the most takes out of the same vmcore; MEASURED_MISSES says so from
    the first kernel series it happens on, for every later series measured."""
    dry = [run for run in results["runs"] if run["compression"] == "dry-run"]
    best = {
        (run["vmcore"], name): max(r["stats"][key] for r in dry if r["vmcore"] == run["vmcore"])
        for run in dry
        for name, key in MISS_CLASSES.items()
    }
    missed: dict[KernelVersion, set[tuple[tuple[int, int], str]]] = {}
    for run in dry:
        kernel = kernel_numbers(results["vmcores"][run["vmcore"]]["kernel"])
        assert kernel is not None
        for name, key in MISS_CLASSES.items():
            if run["stats"][key] * 5 < best[(run["vmcore"], name)]:
                missed.setdefault(_version(results, run["makedumpfile"]), set()).add(
                    (kernel[:2], name)
                )
    derived = {version: (min(misses)[0], min(misses)[1]) for version, misses in missed.items()}
    assert derived == MEASURED_MISSES
    series = sorted({kernel[:2] for kernel in map(kernel_numbers, _kernels(results)) if kernel})
    for version, (first, name) in MEASURED_MISSES.items():
        assert missed[version] == {(s, name) for s in series if s >= first}, version


def _kernels(results: dict[str, Any]) -> list[str]:
    return [vmcore["kernel"] for vmcore in results["vmcores"].values()]


def test_the_recommended_capture_dumped_as_the_docs_say() -> None:
    """One real crash cycle of the recommended Debian 13 capture, cited by the docs."""
    stored = json.loads(RECOMMENDED.read_text())
    assert stored["recipe_changes"] == recommended_changes()
    # The bundled Debian 13 recipe is the recommendation (its calibration was re-booted
    # with it): Debian 14's makedumpfile and zstd dumps.
    bundled = tomllib.loads((REPO / "recipes" / "qemu-x86_64-trixie.toml").read_text())
    assert bundled["source"]["packages"] == stored["recipe_changes"]["source"]["packages"]
    assert bundled["dump"]["compression"] == stored["recipe_changes"]["dump"]["compression"]
    assert stored["makedumpfile"].startswith("1:1.7.8") and stored["dmesg_readable"] is True
    assert SHA256.match(stored["console_sha256"])
    assert any(line.startswith("kdump: dump saved to") for line in stored["decisive"])
    assert not any(UNSUPPORTED in line for line in stored["collector_log"])
    doc = " ".join(DOC.read_text().split())
    assert f"crashkernel={stored['crashkernel']}" in doc
    assert f"saved a zstd dump of {stored['dump_size']:,} bytes" in doc
