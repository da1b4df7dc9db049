"""makedumpfile against the kernel it dumps: real Debian makedumpfile binaries and builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.image.fetch import fetch_packages
from builder.image.makedumpfile import (
    LATEST_KERNEL,
    CollectorCheck,
    binary_version,
    check_collector,
)
from builder.image.packages import PackageRoot
from tests.conftest import run_cli
from tests.support.paths import DEFAULT_RECIPE


@pytest.mark.parametrize("release", ["", "trixie", "forky"])
def test_the_version_read_from_the_binary_is_the_package_version(release: str) -> None:
    """Debian 12, 13 and 14's makedumpfile say their release where `--version` prints it."""
    # By name: a fetch that also resolves dependencies returns the libraries too.
    (package,) = [
        p
        for p in fetch_packages(["makedumpfile"], "x86_64", release=release)
        if p.name == "makedumpfile"
    ]
    binary = PackageRoot([package.path]).read_bytes("/usr/bin/makedumpfile")
    version = binary_version(binary)
    assert version is not None
    upstream = package.version.split(":")[-1].split("-")[0]  # 1:1.7.6-1 -> 1.7.6
    assert ".".join(map(str, version)) == upstream
    assert version in LATEST_KERNEL


@pytest.mark.parametrize(
    ("makedumpfile", "kernel", "too_old"),
    [
        ((1, 7, 2), "6.1.0-57-amd64", True),  # Debian 12's own pair
        ((1, 7, 6), "6.12.48+deb13-amd64", True),  # Debian 13's
        ((1, 7, 8), "7.2.12+deb14-amd64", True),  # Debian 14's
        ((1, 7, 9), "7.0.0-rc1", False),  # the boundary is inclusive, as makedumpfile's
        ((1, 7, 9), "7.0.1", True),
        ((1, 7, 6), "6.11.4", False),
        ((9, 9, 9), "7.2.12", False),  # a release newer than the table: nothing known
    ],
)
def test_too_old_follows_latest_version(
    makedumpfile: tuple[int, int, int], kernel: str, too_old: bool
) -> None:
    check = CollectorCheck(makedumpfile, LATEST_KERNEL.get(makedumpfile), kernel)
    assert check.too_old is too_old


def test_no_makedumpfile_no_check() -> None:
    assert check_collector((), "6.1.0-57-amd64") is None


def test_build_with_an_older_makedumpfile_prints_one_line(tmp_path: Path) -> None:
    """Debian 12's default recipe: makedumpfile 1.7.2 (up to 6.0.1) on 6.1."""
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "makedumpfile" in line]
    assert len(lines) == 1
    assert lines[0].startswith(
        "kdump-build: warning: makedumpfile 1.7.2 is older than kernel 6.1.0-"
    )
    assert "supports kernels up to 6.0.1" in lines[0]
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["collector"]["makedumpfile"] == "1.7.2"
    assert manifest["collector"]["latest_kernel"] == "6.0.1"
    assert manifest["collector"]["supported"] is False
