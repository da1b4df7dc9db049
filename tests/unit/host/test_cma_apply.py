"""`kdump-build crashkernel --cma`: the split recommendation applied to GRUB and judged live.

The records are written as enable writes them (`BuildRecord.to_json`); the split
itself comes from the fit model (tests/unit/crashkernel/test_cma_split.py) and a
7.x guest boots with it (tests/vm/test_next_kernels.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.atomic import MARKER, MARKER_TEXT
from builder.crashkernel.live import read_live_reservation
from builder.errors import HostError
from builder.host import grub
from builder.host.captures import RECORD, BuildRecord, Inputs, read_record
from builder.host.enable import Effects, apply_reservation
from builder.host.paths import HostPaths
from builder.host.reserve import machine_need, reservation_verdict
from builder.units import GiB, MiB

NEW, OLD = "7.2.12+deb14-amd64", "6.12.57+deb13-amd64"
OFF = Effects(systemctl=False, update_grub=False, require_root=False)


def _record(paths: HostPaths, version: str, recommended: str, split: str | None) -> None:
    capture = paths.capture(version)
    capture.mkdir(parents=True)
    (capture / MARKER).write_bytes(MARKER_TEXT + f"{RECORD}\n".encode())  # its inventory
    inputs = Inputs("/etc/kdump-build/recipe.toml", "0" * 64, "/boot/vmlinuz", 1, 1, "x")
    record = BuildRecord(inputs, version, 1 * GiB, 96 * MiB, recommended, split)
    (capture / RECORD).write_text(json.dumps(record.to_json()))


def test_the_split_goes_into_grub_and_reads_back(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    (tmp_path / "etc/default/grub.d").mkdir(parents=True)
    (tmp_path / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX=""\n')
    _record(paths, NEW, "104M", "72M 48M,cma")
    assert read_record(paths.capture(NEW)) is not None
    need = machine_need(paths, cma=True)
    assert (need.value, need.reserve) == ("72M 48M,cma", 120 * MiB)
    said: list[str] = []
    apply_reservation(paths, need, OFF, said.append)
    line = paths.grub_dropin.read_text().splitlines()[-1]
    assert line.endswith(' crashkernel=72M crashkernel=48M,cma"'), line
    assert grub.applied_value(paths) == "72M 48M,cma"
    assert said[0].startswith("reservation: crashkernel=72M crashkernel=48M,cma for this machine")
    # Without --cma the unsplit value, as before.
    assert machine_need(paths).value == "104M"
    grub.apply(paths, "104M", run_update=False)
    assert grub.applied_value(paths) == "104M"


def test_cma_needs_every_captures_kernel_to_reserve_it(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    _record(paths, NEW, "104M", "72M 48M,cma")
    _record(paths, OLD, "112M", None)
    with pytest.raises(
        HostError, match=rf"crashkernel=,cma needs every capture's kernel .*: {re.escape(OLD)}$"
    ):
        machine_need(paths, cma=True)
    assert machine_need(paths).value == "112M"


def test_a_booted_split_fits_with_its_cma_part(tmp_path: Path) -> None:
    sys_kernel = tmp_path / "sys/kernel"
    (sys_kernel / "kexec").mkdir(parents=True)
    (sys_kernel / "kexec/crash_size").write_text(f"{72 * MiB}\n")
    (sys_kernel / "kexec/crash_cma_ranges").write_text("1c000000-1effffff\n")  # 48 MiB
    live = read_live_reservation(tmp_path / "no-iomem", sys_kernel=sys_kernel)
    assert (live.size, live.cma, live.usable) == (72 * MiB, 48 * MiB, 120 * MiB)
    inputs = Inputs("r", "0" * 64, "k", 1, 1, "x")
    record = BuildRecord(inputs, NEW, GiB, 96 * MiB, "104M", "72M 48M,cma")
    verdict = reservation_verdict(live, record)
    assert verdict == "72.0 MiB + 48.0 MiB ,cma, the capture needs 96.0 MiB: fits (24.0 MiB margin)"
