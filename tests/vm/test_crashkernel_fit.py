"""The recommended crashkernel= for the default recipe works on a real 1 GiB guest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.crashkernel_syntax import parse_crashkernel
from builder.units import MiB
from tests.conftest import run_cli
from tests.support.paths import DEFAULT_RECIPE
from tests.vm import harness

pytestmark = pytest.mark.vm


def test_recommended_reservation_dumps_on_1g(tmp_path: Path) -> None:
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    capture = tmp_path / "capture"
    built = run_cli(str(DEFAULT_RECIPE), "-o", str(capture), "--json")
    assert built.returncode == 0, built.stderr
    assert json.loads((capture / "fit.json").read_text())["fits"] is True
    assert json.loads(built.stdout)["fits"] is True

    fitted = run_cli("fit", str(DEFAULT_RECIPE), "--ram", "1G", "--json")
    assert fitted.returncode == 0, fitted.stderr
    report = json.loads(fitted.stdout)
    recommended = report["recommended"]
    (row,) = report["rams"]
    size = parse_crashkernel(recommended).size  # type: ignore[union-attr]
    assert row["needed"] <= size < row["needed"] + 8 * MiB  # rounded up to one 8 MiB step

    crash = harness.crash_to_local_disk(capture, recommended, tmp_path)
    boot, files = crash.boot, crash.files
    context = boot.console[-4000:]
    reserved = re.search(r"Reserving (\d+)MB of memory at \d+MB for crashkernel", boot.console)
    assert reserved is not None, context
    assert int(reserved.group(1)) * MiB == size, reserved.group(0)
    assert boot.returncode == 0, f"QEMU did not power off cleanly:\n{context}"
    assert "kdump: dump saved to" in boot.console, context

    vmcores = [path for path in files if path.name == "vmcore"]
    assert len(vmcores) == 1, files
    log = harness.dump_dmesg(vmcores[0], tmp_path / "dmesg.txt")
    assert "sysrq triggered crash" in log
