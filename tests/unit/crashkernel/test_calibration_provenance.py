"""Every stored calibration number is tied to the boots that made it, and refits to itself.

Each stored minimum carries the evidence of its decisive boots (a passing one
at it, a failing one for the memory reason a step below: the capture's sha256,
the kernel package, the QEMU command, the reservation, the console's digest
and decisive lines, the console itself compressed in bench/evidence/), and the
constants are what the fit gives for the stored measurements. The guest shape
and dump target of the held-out VM test are in no store.

Every stored minimum has it: the ones measured before evidence was kept were
re-booted with `--verify` (bench/calibration_verify.py) on 2026-12-07, so a
measurement without evidence has no excuse left and fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.calibration_evidence import evidence_problems, kernel_package, unbacked
from bench.calibration_fit import measurement_records, refit
from bench.calibration_search import Config, Trial
from builder.crashkernel.model import CALIBRATION_DIR
from builder.units import GiB, MiB
from tests.vm.test_crashkernel_fit import HELD_OUT_CPUS, HELD_OUT_DUMP, HELD_OUT_RAM

STORES = sorted(CALIBRATION_DIR.glob("*.json"))


def _record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text())
    return record


MEASURED = [(path, m) for path in STORES for m in _record(path)["measurements"]]


@pytest.mark.parametrize("path", STORES, ids=lambda path: path.stem)
def test_refit_from_the_stored_measurements_equals_the_stored_constants(path: Path) -> None:
    record = _record(path)
    assert refit(record) == record["constants"]


@pytest.mark.parametrize(
    ("path", "measurement"), MEASURED,
    ids=[f"{p.stem}-{m['ram'] // MiB}M-{m['vcpus']}cpu-{m['variant']}" for p, m in MEASURED],
)  # fmt: skip
def test_every_stored_minimum_has_its_evidence(path: Path, measurement: dict[str, Any]) -> None:
    assert evidence_problems(measurement) == []


def test_every_store_has_measurements() -> None:
    # The parametrised check above passes vacuously on a store that lost its measurements.
    assert all(_record(path)["measurements"] for path in STORES)
    assert STORES, CALIBRATION_DIR


def test_the_held_out_shape_is_in_no_store() -> None:
    ram = int(HELD_OUT_RAM.removesuffix("G")) * GiB
    for path in STORES:
        for measurement in _record(path)["measurements"]:
            assert (measurement["ram"], measurement["vcpus"]) != (ram, HELD_OUT_CPUS), path
            assert measurement["target"] != HELD_OUT_DUMP["target"], path
        assert all(p["dump_target"] != HELD_OUT_DUMP["target"]
                   for p in _record(path)["profiles"].values())  # fmt: skip


def _trial(size: int, ok: bool, **changes: Any) -> Trial:
    return Trial("1G/1cpu/nr_cpus=1", size, ok, "", 1.0, "", "", **changes)


def test_write_refuses_a_minimum_replayed_without_evidence(tmp_path: Path) -> None:
    config = Config(1024, 1)
    seen = [_trial(96, True), _trial(88, False), _trial(96, True, replayed=True)]
    problems = unbacked(config, 96, seen, tmp_path)
    assert problems == [
        "1G/1cpu/nr_cpus=1: passing boot at 96M was replayed from trials.jsonl without evidence",
        "1G/1cpu/nr_cpus=1: failing boot at 88M was replayed from trials.jsonl without evidence",
    ]
    with pytest.raises(SystemExit, match="refusing to store measurements without"):
        measurement_records({config: 96 * MiB}, {config: seen}, "x86_64-6.1", tmp_path)


def test_write_refuses_evidence_whose_console_is_gone(tmp_path: Path) -> None:
    evidence = {"console_sha256": "0" * 64}
    seen = [_trial(96, True, evidence=evidence), _trial(88, False, evidence=evidence)]
    assert unbacked(Config(1024, 1), 96, seen, tmp_path) == [
        f"1G/1cpu/nr_cpus=1: passing boot at 96M: its console is not in {tmp_path / 'consoles'}",
        f"1G/1cpu/nr_cpus=1: failing boot at 88M: its console is not in {tmp_path / 'consoles'}",
    ]


def test_evidence_check_reads_the_kept_console(tmp_path: Path) -> None:
    """A kept console that does not show the claim fails the check, naming what is wrong."""
    good = next(m for _, m in MEASURED if not evidence_problems(m))
    doctored = json.loads(json.dumps(good))
    failing = next(t for t in reversed(doctored["trials"])
                   if t.get("ok") is False and "console" in t.get("evidence", {}))  # fmt: skip
    passing = next(t for t in reversed(doctored["trials"])
                   if t.get("ok") is True and "console" in t.get("evidence", {}))  # fmt: skip
    failing["evidence"]["console"] = passing["evidence"]["console"]  # the wrong boot's log
    problems = evidence_problems(doctored)
    assert any("not the console whose sha256 is stored" in p for p in problems), problems
    assert any("failing boot without a memory reason" in p for p in problems), problems


def test_the_kernel_package_is_the_images_in_both_debian_layouts(tmp_path: Path) -> None:
    """Debian 14 split linux-image-VER: the build fetches linux-binary-VER (the image)
    and linux-modules-VER, not the linux-image-VER that depends on them."""
    manifests = {
        "6.12": [("linux-image-6.12.118+deb13-amd64", "6.12.118-1"), ("makedumpfile", "1:1.7.6-1")],
        "7.2": [("linux-base-7.2.12+deb14-amd64", "7.2.12-1"),
                ("linux-binary-7.2.12+deb14-amd64", "7.2.12-1"),
                ("linux-modules-7.2.12+deb14-amd64", "7.2.12-1")],
    }  # fmt: skip
    found = {}
    for series, packages in manifests.items():
        capture = tmp_path / series
        capture.mkdir()
        listed = [{"name": name, "version": version} for name, version in packages]
        (capture / "manifest.json").write_text(json.dumps({"packages": listed}))
        found[series] = kernel_package(capture)
    assert found == {"6.12": "linux-image-6.12.118+deb13-amd64 6.12.118-1",
                     "7.2": "linux-binary-7.2.12+deb14-amd64 7.2.12-1"}  # fmt: skip
