"""The Debian package: its unit and hooks are the ones the code describes, two builds
give the same bytes, and lintian reports no error and no warning (debian/, scripts/build-deb)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from builder.host import service
from tests.support.paths import REPO

DEBIAN = REPO / "debian"


def test_the_package_files_are_what_the_code_describes() -> None:
    """debian/package/ is committed; it must say what builder/host/service.py says."""
    for relative, (text, mode) in service.packaged_files().items():
        path = DEBIAN / "package" / relative
        assert path.read_text() == text, f"{path}: regenerate it from packaged_files()"
        assert path.stat().st_mode & 0o777 == mode, path
    assert sorted(line.split()[0] for line in (DEBIAN / "install").read_text().splitlines()) == \
        sorted(f"debian/package/{relative}" for relative in service.packaged_files())  # fmt: skip


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    built = []
    for run in ("first", "second"):
        out = tmp_path_factory.mktemp(run)
        result = subprocess.run([str(REPO / "scripts" / "build-deb"), str(out)],
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
        (deb,) = out.glob("*.deb")
        assert result.stdout.strip() == str(deb)
        built.append(deb)
    return built


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def test_two_builds_give_the_same_bytes(debs: list[Path]) -> None:
    first, second = (hashlib.sha256(deb.read_bytes()).hexdigest() for deb in debs)
    assert first == second
    version = field(debs[0], "Version")
    assert debs[0].name == f"kdump-build_{version}_all.deb"


def test_lintian_reports_no_error_and_no_warning(debs: list[Path]) -> None:
    result = subprocess.run(["lintian", "--fail-on", "error,warning", str(debs[0])],
                            capture_output=True, text=True, check=False)  # fmt: skip
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert result.returncode == 0 and tags == [], result.stdout + result.stderr


def test_the_package_owns_its_unit_hooks_and_purgatories(debs: list[Path]) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(debs[0])], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    files = {line.split()[-1].removeprefix(".") for line in listing.splitlines()}
    for relative in service.packaged_files():
        assert f"/{relative}" in files
    assert "/usr/bin/kdump-build" in files
    purgatory = "/usr/lib/python3/dist-packages/builder/kexec/purgatory/purgatory-{}.o"
    assert {purgatory.format(arch) for arch in ("x86_64", "aarch64", "riscv64")} <= files
    conffiles = subprocess.run(["dpkg-deb", "-I", str(debs[0]), "conffiles"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert conffiles.split() == ["/etc/kernel/postinst.d/kdump-build",
                                 "/etc/kernel/postrm.d/kdump-build"]  # fmt: skip


def control_file(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-I", str(deb), name], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_nothing_ships_under_lib_and_debhelper_still_handles_the_unit(debs: list[Path]) -> None:
    """/lib is /usr/lib on merged /usr (Debian 12 on): a file under /lib made Debian 13's
    purge try to remove the aliased directory. Debian 12's dh_installsystemd reads units
    only under lib/ (debian/rules shows it the unit there): its snippets must be there."""
    listing = subprocess.run(["dpkg-deb", "-c", str(debs[0])], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    paths = [line.split()[-1] for line in listing.splitlines()]
    assert [path for path in paths if path.startswith("./lib")] == []
    assert "./usr/lib/systemd/system/kdump-build.service" in paths
    assert "deb-systemd-helper update-state 'kdump-build.service'" in control_file(
        debs[0], "postinst"
    )
    assert "deb-systemd-helper purge 'kdump-build.service'" in control_file(debs[0], "postrm")


def test_debians_own_libraries_satisfy_the_depends(debs: list[Path]) -> None:
    """No versioned Python dependency above Debian 12's: apt would refuse the package."""
    depends = [item.strip() for item in field(debs[0], "Depends").split(",")]
    for name in ("makedumpfile", "python3-typer", "python3-zstandard", "python3-libarchive-c",
                 "python3-lz4"):  # fmt: skip
        assert name in depends, depends
    assert "busybox-static" in field(debs[0], "Recommends")
