"""The whole path on real parts: build, boot, crash, capture, check the vmcore.

The capture is what a newcomer gets (issue 25): `kdump-build init` run in an empty
directory, its recipe built with no edit. The default recipe's own crash cycles
are in test_kdump_load.py and test_dump_targets.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.recipe.parse import load_recipe
from tests.conftest import run_cli
from tests.vm import harness

pytestmark = pytest.mark.vm


def test_sysrq_crash_is_dumped_by_our_initrd(tmp_path: Path) -> None:
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    newcomer = tmp_path / "new"
    newcomer.mkdir()
    init = run_cli("init", "--target", "local", "--arch", "amd64", cwd=newcomer)
    assert init.returncode == 0, init.stderr
    recipe = newcomer / "recipe.toml"
    recipe.write_text(init.stdout)
    capture = tmp_path / "capture"
    result = run_cli(str(recipe), "-o", str(capture), "--json", cwd=newcomer)
    assert result.returncode == 0, result.stderr
    kernel_version = json.loads(result.stdout)["kernel"]

    crashkernel = load_recipe(recipe).crashkernel.reserve
    crash = harness.crash_to_local_disk(capture, crashkernel, tmp_path)
    boot, files = crash.boot, crash.files
    context = boot.console[-4000:]
    # The recipe's final action is a reboot; QEMU runs with -no-reboot, so it ends.
    assert boot.returncode == 0, f"QEMU did not end cleanly:\n{context}"
    assert "main: kexec_crash_loaded=1" in boot.console, context
    assert "sysrq: Trigger a crash" in boot.console, context
    assert "kdump: dump saved to" in boot.console, context

    vmcores = [path for path in files if path.name == "vmcore"]
    assert len(vmcores) == 1, files
    dump_dir = vmcores[0].parent
    names = sorted(path.name for path in dump_dir.iterdir())
    assert names == ["kdump-target", "vmcore", "vmcore-dmesg.txt"]
    # Which target saved it (there may be fallbacks): the recipe's only one.
    assert (dump_dir / "kdump-target").read_text().strip() == "local LABEL=kdump"

    log = harness.dump_dmesg(vmcores[0], tmp_path / "dmesg.txt")
    assert "sysrq triggered crash" in log
    assert f"Linux version {kernel_version}" in log
    # The capture side's own copy of the log agrees with the host's reading.
    assert "sysrq triggered crash" in (dump_dir / "vmcore-dmesg.txt").read_text(errors="replace")
