"""Tests for builder/kexec/state.py: the record `load` leaves for `status` and `unload`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import OutputError
from builder.kexec.method import LoadMethod
from builder.kexec.state import LoadRecord, forget_load, record_load, recorded_method


def test_segments_record_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "kdump-build" / "crash.json"
    record = LoadRecord(LoadMethod.SEGMENTS, Path("/out"), 0x3BFFF000, ("kernel", "purgatory"))
    record_load(record, path)
    assert json.loads(path.read_text()) == {
        "method": "segments",
        "outdir": "/out",
        "entry": 0x3BFFF000,
        "segments": ["kernel", "purgatory"],
    }
    assert recorded_method(path) is LoadMethod.SEGMENTS
    forget_load(path)
    assert recorded_method(path) is None
    forget_load(path)  # nothing to remove: fine


@pytest.mark.parametrize("text", ["", "{", "[]", '{"method": "fast"}', '{"outdir": "/"}'])
def test_unreadable_record_is_no_record(tmp_path: Path, text: str) -> None:
    path = tmp_path / "crash.json"
    path.write_text(text)
    assert recorded_method(path) is None


def test_unwritable_state_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "run"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(OutputError, match=r"cannot record state in .*run/crash\.json: "):
        record_load(LoadRecord(LoadMethod.FILE, Path("/out")), blocker / "crash.json")
