"""A dedicated capture kernel, for real: the guest runs Debian's generic kernel, the capture
runs Debian's cloud kernel (recipes/qemu-x86_64-dedicated.toml) with the cloud kernel's
own modules. The fit model's recommendation for this capture, built here, is checked on
the guest both ways: the dump succeeds with it, and fails 40 MiB below it (so the
recommendation is at most 32 MiB above the real minimum, in 8 MiB steps).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.crashkernel_syntax import parse_crashkernel
from builder.units import MiB, format_size
from tests.conftest import run_cli
from tests.support.kernels import debian_kernel
from tests.support.paths import REPO
from tests.vm import harness

pytestmark = pytest.mark.vm

RECIPE = REPO / "recipes" / "qemu-x86_64-dedicated.toml"
# The model may be at most this generous: 32 MiB plus one 8 MiB step below must fail.
TOO_SMALL_BY = 40 * MiB


@pytest.fixture(scope="module")
def dedicated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, int]:
    """The dedicated build, the generic main kernel, the capture's release, the 1G advice."""
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    work = tmp_path_factory.mktemp("dedicated")
    capture = work / "capture"
    built = run_cli(str(RECIPE), "-o", str(capture), "--json")
    assert built.returncode == 0, built.stderr
    release = json.loads(built.stdout)["kernel"]
    assert release.endswith("-cloud-amd64"), release
    manifest = json.loads((capture / "manifest.json").read_text())
    modules = [member["path"] for member in manifest["members"] if ".ko" in member["path"]]
    assert modules and all(f"/lib/modules/{release}/" in path for path in modules), modules
    main = work / "main-vmlinuz"
    main.write_bytes(debian_kernel("x86_64").image)
    assert main.read_bytes() != (capture / "vmlinuz").read_bytes()
    fitted = run_cli("fit", str(RECIPE), "--ram", "1G", "--json")
    assert fitted.returncode == 0, fitted.stderr
    recommended = parse_crashkernel(json.loads(fitted.stdout)["recommended"]).size  # type: ignore[union-attr]
    return capture, main, release, recommended


def test_cloud_kernel_dumps_a_generic_kernel_crash_with_the_recommendation(
    dedicated: tuple[Path, Path, str, int], tmp_path: Path
) -> None:
    capture, main, release, recommended = dedicated
    crash = harness.crash_to_local_disk(
        capture, format_size(recommended), tmp_path, main_kernel=main
    )
    console = crash.boot.console
    context = console[-4000:]
    assert crash.boot.returncode == 0, f"QEMU did not power off cleanly:\n{context}"
    assert "main: kexec_crash_loaded=1" in console, context
    main_release = re.search(r"Linux version (\S+)", console)
    assert main_release is not None and not main_release.group(1).endswith("-cloud-amd64")
    assert f"Linux version {release}" in harness.capture_console(console), context
    assert "kdump: dump saved to" in console, context
    vmcores = [path for path in crash.files if path.name == "vmcore"]
    assert len(vmcores) == 1, crash.files
    log = harness.dump_dmesg(vmcores[0], tmp_path / "dmesg.txt")
    assert "sysrq triggered crash" in log
    # The crashed kernel is the generic one: its own log says so.
    assert f"Linux version {main_release.group(1)}" in log


def test_the_recommendation_is_not_more_than_32m_generous(
    dedicated: tuple[Path, Path, str, int], tmp_path: Path
) -> None:
    capture, main, _, recommended = dedicated
    smaller = format_size(recommended - TOO_SMALL_BY)
    crash = harness.crash_to_local_disk(capture, smaller, tmp_path, main_kernel=main)
    console = crash.boot.console
    assert f"crashkernel={smaller}" in console
    assert "kdump: dump saved to" not in console, (
        f"the capture also dumped with crashkernel={smaller}: the model's "
        f"{format_size(recommended)} is more than 32 MiB above what it needs"
    )
    assert not [path for path in crash.files if path.name == "vmcore"]
