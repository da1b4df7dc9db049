"""The capture kernel unpacks every initrd layout we write: early microcode cpio,
then several lz4 (legacy format) archives, the one format without an end marker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.binfmt.cpio import read_initrd
from tests.conftest import run_cli
from tests.support.packages import write_package
from tests.support.recipes import write_recipe
from tests.vm import harness

pytestmark = pytest.mark.vm


def test_lz4_with_early_microcode_cpio_dumps(tmp_path: Path) -> None:
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    # Not real microcode: the early loader must skip it, the unpacker must get past it.
    write_package(tmp_path / "ucode.tar.gz", {"./lib/firmware/intel-ucode/06-55-04": bytes(48)})
    changes: dict[str, dict[str, object]] = {
        "initrd": {"compression": "lz4", "compression_level": 9, "microcode": ["intel"]},
        "source": {"package_files": ["ucode.tar.gz"]},
    }
    recipe = write_recipe(tmp_path / "lz4.toml", changes)

    capture = tmp_path / "capture"
    result = run_cli(str(recipe), "-o", str(capture), "--json")
    assert result.returncode == 0, result.stderr
    kernel_version = json.loads(result.stdout)["kernel"]
    image = (capture / "initrd.img").read_bytes()
    segments = {entry.segment for entry in read_initrd(image)}
    assert segments == {0, 1}, segments  # the early cpio, then one lz4 stream of 3 archives
    assert image.count(bytes.fromhex("02214c18")) >= 3

    crash = harness.crash_to_local_disk(capture, "192M", tmp_path)
    boot, files = crash.boot, crash.files
    context = boot.console[-4000:]
    assert boot.returncode == 0, f"QEMU did not power off cleanly:\n{context}"
    assert "kdump: dump saved to" in boot.console, context
    vmcores = [path for path in files if path.name == "vmcore"]
    assert len(vmcores) == 1, files
    log = harness.dump_dmesg(vmcores[0], tmp_path / "dmesg.txt")
    assert "sysrq triggered crash" in log
    assert f"Linux version {kernel_version}" in log
