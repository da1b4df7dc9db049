"""Progress of long steps: what fetch, read and compress report, and how a build shows it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.image.cache import default_cache_dir
from builder.image.fetch import fetch_packages
from builder.image.packages import PackageCache, PackageRoot
from builder.image.pipeline import compress_archives
from builder.image.progress import ByteProgress
from builder.recipe.model import Recipe
from tests.conftest import run_cli
from tests.support.packages import write_package
from tests.support.paths import DEFAULT_RECIPE, REPO

Ticks = list[tuple[int, int, str]]


def _collector() -> tuple[Ticks, ByteProgress]:
    ticks: Ticks = []
    return ticks, lambda done, total, detail: ticks.append((done, total, detail))


def _check_rising_to_total(ticks: Ticks) -> None:
    assert ticks, "no progress reported"
    dones = [done for done, _, _ in ticks]
    assert dones == sorted(dones)
    assert {total for _, total, _ in ticks} == {ticks[-1][1]}
    assert ticks[-1][0] == ticks[-1][1]


def test_reading_reports_package_bytes_and_counts(tmp_path: Path) -> None:
    """Small packages: one tick per package; a real .deb also ticks while it is read."""
    small = [write_package(tmp_path / f"p{index}.tar.gz", {f"usr/bin/t{index}": b"x" * 999})
             for index in range(2)]  # fmt: skip
    # 2.8 MB: read in several MiB steps (its own libraries come with it; not read here).
    (libc,) = [package for package in fetch_packages(["libc6"], "x86_64")
               if package.name == "libc6"]  # fmt: skip
    ticks, listener = _collector()
    PackageRoot([*small, libc.path], PackageCache(tmp_path / "cache"), listener)
    _check_rising_to_total(ticks)
    assert ticks[-1][1] == sum(path.stat().st_size for path in [*small, libc.path])
    assert [detail for _, _, detail in ticks if "packages" in detail] == [
        "1 of 3 packages", "2 of 3 packages", "3 of 3 packages"
    ]  # fmt: skip
    assert any(detail == "reading libc6" for _, _, detail in ticks)
    # Indexed now: the packages are not read again, only counted.
    again, listener = _collector()
    PackageRoot([*small, libc.path], PackageCache(tmp_path / "cache"), listener)
    assert [detail for _, _, detail in again] == [f"{n} of 3 packages" for n in (1, 2, 3)]


def test_compressing_reports_each_archive(default_recipe: Recipe) -> None:
    archives = [os.urandom(300_000), bytes(2_000_000), b"rendered"]
    ticks, listener = _collector()
    initrd = compress_archives(default_recipe, archives, listener)
    assert initrd == compress_archives(default_recipe, archives)  # progress changes no byte
    _check_rising_to_total(ticks)
    assert ticks[-1] == (sum(map(len, archives)), sum(map(len, archives)), "3 of 3 archives")


@pytest.mark.network
def test_downloading_reports_bytes_from_apt(tmp_path: Path) -> None:
    """A package not in the cache yet: apt's status lines become byte counts."""
    cache = tmp_path / "cache"
    shutil.copytree(default_cache_dir() / "apt" / "amd64", cache / "apt" / "amd64")
    shutil.rmtree(cache / "apt" / "amd64" / "resolved", ignore_errors=True)
    ticks, listener = _collector()
    # netbase: small, and with no Depends (the libraries of one would be fetched too).
    (package,) = fetch_packages(["netbase"], "x86_64", cache_dir=cache, progress=listener)
    assert package.path.is_relative_to(cache)
    _check_rising_to_total(ticks)
    assert ticks[-1] == (package.path.stat().st_size,) * 2 + ("1 packages",)


def test_plain_lines_when_not_a_terminal_and_nothing_with_json(tmp_path: Path) -> None:
    verbose = run_cli(str(DEFAULT_RECIPE), "-o", str(tmp_path / "v"), "-v")
    assert verbose.returncode == 0, verbose.stderr
    lines = verbose.stderr.splitlines()
    assert any(line.startswith("  compress (zstd): ") and "3 of 3 archives" in line
               for line in lines), lines  # fmt: skip
    assert any(line.startswith("  write ") and line.endswith(" s") for line in lines), lines
    assert "\x1b[" not in verbose.stderr  # no terminal codes in a log
    quiet = run_cli(str(DEFAULT_RECIPE), "-o", str(tmp_path / "j"), "--json")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_live_progress_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal the step lines come through rich (its escape codes), then the summary."""
    primary, secondary = os.openpty()
    command = [sys.executable, "-m", "builder.cli", str(DEFAULT_RECIPE), "-o", str(tmp_path / "t")]
    with subprocess.Popen(command, cwd=REPO, stdin=secondary, stdout=secondary,
                          stderr=secondary) as process:  # fmt: skip
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed when the build ended
                break
            if not chunk:
                break
            output += chunk
    os.close(primary)
    assert process.returncode == 0, output[-2000:]
    text = output.decode(errors="replace")
    assert "\x1b[" in text  # drawn by rich
    assert "compress (zstd)" in text and "built qemu-x86_64 in" in text
