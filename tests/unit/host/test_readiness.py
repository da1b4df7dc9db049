"""Plain words on a machine that cannot load a crash kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.readiness import Readiness, check_ready, problems, suggested_value
from builder.kexec.method import Lockdown
from builder.kexec.syscalls import KexecStatus

READY = Readiness(KexecStatus(False, 256 << 20, Lockdown.NONE), root=True, kexec_disabled=False)


def test_a_ready_machine_has_no_problem() -> None:
    assert problems(READY, "256M") == []
    assert problems(READY, "256M", segments=True) == []


def test_each_missing_piece_is_named() -> None:
    no_kexec = Readiness(KexecStatus(None, None, None), True, False)
    assert "no kexec support" in problems(no_kexec, None)[0]
    bare = Readiness(KexecStatus(False, 0, Lockdown.INTEGRITY), False, True)
    found = problems(bare, "320M", segments=True)
    assert found[0].startswith(
        "no memory is reserved for a crash kernel: boot with crashkernel=320M"
    )
    assert "locked down (integrity): it refuses kexec_load" in found[1]
    assert "kernel.kexec_load_disabled = 1" in found[2]
    assert "needs root" in found[3]
    unknown_value = problems(Readiness(KexecStatus(False, 0, None), True, False), None)[0]
    assert "crashkernel= (kdump-build crashkernel --show)" in unknown_value


def test_the_value_comes_from_the_capture(tmp_path: Path) -> None:
    assert suggested_value(tmp_path) is None
    (tmp_path / "fit.json").write_text(json.dumps({"recommended": "1G-4G:192M,4G-:256M"}))
    assert suggested_value(tmp_path) == "1G-4G:192M,4G-:256M"


def test_check_ready_is_one_line(tmp_path: Path) -> None:
    bare = Readiness(KexecStatus(False, 0, None), False, False)
    with pytest.raises(HostError) as error:
        check_ready(tmp_path, readiness=bare)
    assert "\n" not in str(error.value) and "; loading a crash kernel needs root" in str(
        error.value
    )
    check_ready(tmp_path, readiness=READY)
