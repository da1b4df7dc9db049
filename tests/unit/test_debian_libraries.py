"""The command line on Debian 12's own Python libraries, as the .deb runs it.

Debian's /usr/bin/python3 with python3-typer 0.7.0, -zstandard 0.20, -libarchive-c 2.9
and -lz4 4.0.2 from /usr/lib/python3/dist-packages (./bootstrap installs them), and
this checkout on PYTHONPATH: no virtual environment, nothing from pip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.image.pipeline import BuildResult
from tests.conftest import run_cli
from tests.support.paths import DEFAULT_RECIPE, REPO

DEBIAN_PYTHON = "/usr/bin/python3"
DIST_PACKAGES = "/usr/lib/python3/dist-packages/"


def run_debian(*args: str) -> subprocess.CompletedProcess[str]:
    hidden = ("PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE")
    env = {name: value for name, value in os.environ.items() if name not in hidden}
    env.update(PATH="/usr/bin:/bin", PYTHONPATH=str(REPO), PYTHONNOUSERSITE="1")
    return subprocess.run([DEBIAN_PYTHON, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip


def debian_version(package: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                            text=True, check=True)  # fmt: skip
    return result.stdout


def test_the_libraries_are_debians_own() -> None:
    probe = "import typer, zstandard, libarchive, lz4, click; print(typer.__file__, " \
        "typer.__version__, zstandard.__version__)"  # fmt: skip
    result = run_debian("-c", probe)
    assert result.returncode == 0, result.stderr
    where, typer_version, zstd_version = result.stdout.split()
    assert where.startswith(DIST_PACKAGES)
    assert debian_version("python3-typer").startswith(f"{typer_version}-")
    assert debian_version("python3-zstandard").startswith(f"{zstd_version}-")


def test_build_on_debians_libraries_has_the_venvs_members(
    tmp_path: Path, default_build: BuildResult
) -> None:
    result = run_debian("-m", "builder.cli", str(DEFAULT_RECIPE), "-o", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert "built qemu-x86_64 in" in result.stdout
    ours = json.loads((tmp_path / "d" / "manifest.json").read_text())
    venv = run_cli(str(DEFAULT_RECIPE), "-o", str(tmp_path / "v"), "-q")
    assert venv.returncode == 0, venv.stderr
    theirs = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert ours["members"] == theirs["members"] and len(ours["members"]) > 100
    listing = run_debian("-m", "builder.cli", "inspect", str(tmp_path / "d" / "initrd.img"))
    assert listing.returncode == 0 and "/init" in listing.stdout, listing.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["fit", "--crashkernel", "256M", "--ram", "2G", "--ram", "8G"], "2G"),
        (["fit", "--crashkernel", "256M"], "crashkernel=256M"),
        (["kernel-removed", "--help"], "The kernel version"),
    ],
)
def test_options_and_arguments_on_typer_0_7(args: list[str], fragment: str) -> None:
    result = run_debian("-m", "builder.cli", *args)
    assert result.returncode == 0, result.stderr
    assert fragment in result.stdout


def test_errors_stay_one_line_on_typer_0_7() -> None:
    result = run_debian("-m", "builder.cli", "kernel-removed", "../../../tmp/x")
    assert (result.returncode, result.stderr) == (2, "kdump-build: error: '../../../tmp/x': not "
        "a kernel version (a name like 6.1.0-9-amd64, never a path with / or ..)\n")  # fmt: skip
    result = run_debian("-m", "builder.cli", "fit", "--ram", "lots")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    result = run_debian("-m", "builder.cli", "nonsense")
    assert result.returncode == 2 and "nonsense" in result.stderr, result.stderr
