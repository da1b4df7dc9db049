"""The recommended crashkernel= for the default recipe works on a real 1 GiB guest, and on a
guest shape and dump target held out of every calibration it dumps, while 40 MiB less
runs out of memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.crashkernel_syntax import parse_crashkernel
from builder.units import MiB, format_size
from tests.conftest import run_cli
from tests.support import qemu, recipes
from tests.support.capture_memory import memory_failure
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


# ------------------------------------------------------------ held out of the fit
# A guest shape and a dump target that no calibration file measured (the files
# hold 1, 4 and 16 GiB guests with 1 or 2 vCPUs dumping to a local disk or nfs;
# tests/unit/crashkernel/test_calibration_provenance.py keeps it so): the fit's
# recommendation for it is a prediction, checked here both ways.
HELD_OUT_RAM = "3G"
HELD_OUT_CPUS = 3
HELD_OUT_SERIAL = "kdump-held-out"
HELD_OUT_DUMP = {"target": "raw", "device": f"SERIAL={HELD_OUT_SERIAL}", "final_action": "poweroff",
                 "failure_action": "poweroff"}  # fmt: skip
# At most 32 MiB too generous, plus one 8 MiB step: this much less must fail.
TOO_SMALL_BY = 40 * MiB


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The default recipe dumping to a raw disk, built, and the fit's advice for 3 GiB."""
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    work = tmp_path_factory.mktemp("held-out")
    recipe = recipes.write_recipe(work / "raw.toml", replace={"dump": HELD_OUT_DUMP})
    capture = work / "capture"
    built = run_cli(str(recipe), "-o", str(capture), "--json")
    assert built.returncode == 0, built.stderr
    fitted = run_cli("fit", str(recipe), "--ram", HELD_OUT_RAM, "--json")
    assert fitted.returncode == 0, fitted.stderr
    recommended = parse_crashkernel(json.loads(fitted.stdout)["recommended"]).size  # type: ignore[union-attr]
    (capture / "main-initrd.img").write_bytes(harness.build_main_initrd(capture))
    return capture, recommended


def _raw_crash(capture: Path, size: int, work: Path) -> tuple[qemu.Boot, Path]:
    """A 3 GiB, 3 vCPU guest crashed with crashkernel=`size`, dumping to a raw disk."""
    disk = work / "raw.img"
    with open(disk, "wb") as handle:
        handle.truncate(512 * MiB)
    command = qemu.qemu_command(
        capture / "vmlinuz", capture / "main-initrd.img",
        f"console=ttyS0 crashkernel={format_size(size)}", memory=HELD_OUT_RAM,
        cpus=HELD_OUT_CPUS, log=work / "console.log",
    )  # fmt: skip
    command += ["-drive", f"file={disk},format=raw,if=none,id=raw",
                "-device", f"virtio-blk-pci,drive=raw,serial={HELD_OUT_SERIAL}"]  # fmt: skip
    return qemu.watch(
        command, work / "console.log", timeout=600, stop=harness.capture_panicked
    ), disk


def test_held_out_shape_dumps_with_the_recommendation(
    held_out: tuple[Path, int], tmp_path: Path
) -> None:
    capture, recommended = held_out
    boot, disk = _raw_crash(capture, recommended, tmp_path)
    context = boot.console[-4000:]
    assert f"smp: Brought up 1 node, {HELD_OUT_CPUS} CPUs" in boot.console, context
    assert boot.returncode == 0, f"QEMU did not power off cleanly:\n{context}"
    assert "kdump: dump saved to /dev/vda" in boot.console, context
    vmcore = tmp_path / "vmcore"
    restored = run_cli("restore", str(disk), str(vmcore))
    assert restored.returncode == 0, restored.stderr
    log = harness.dump_dmesg(vmcore, tmp_path / "dmesg.txt")
    assert "sysrq triggered crash" in log
    print(f"{HELD_OUT_RAM}/{HELD_OUT_CPUS} CPUs/raw: crashkernel={format_size(recommended)} dumps")


def test_held_out_shape_fails_for_memory_40m_below(
    held_out: tuple[Path, int], tmp_path: Path
) -> None:
    capture, recommended = held_out
    smaller = recommended - TOO_SMALL_BY
    boot, _ = _raw_crash(capture, smaller, tmp_path)
    assert "kdump: dump saved" not in boot.console, (
        f"the capture also dumped with crashkernel={format_size(smaller)}: the model's "
        f"{format_size(recommended)} is more than 32 MiB above what it needs"
    )
    # Failed for the memory reason: the capture does not fit, or runs out of memory.
    reason = memory_failure(boot.console, smaller)
    print(f"crashkernel={format_size(smaller)}: {reason}")
