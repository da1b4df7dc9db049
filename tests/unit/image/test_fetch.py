"""Fetching from a named Debian release with a private apt state (real mirrors, cached)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import FetchError, ReleaseError
from builder.image.cache import default_cache_dir
from builder.image.fetch import AptArchive, fetch_packages
from builder.image.packages import PackageRoot
from builder.image.suites import DEBIAN_KEYRING

pytestmark = pytest.mark.network


def test_a_named_release_comes_from_its_own_archive() -> None:
    """Debian 13's busybox on a Debian 12 host, verified with the host's archive keyring."""
    host = fetch_packages(["busybox-static"], "x86_64")
    (trixie,) = fetch_packages(["busybox-static"], "x86_64", release="trixie")
    assert trixie.version != host[0].version
    assert trixie.version.startswith("1:1.37")  # Debian 13's; Debian 12 has 1.35
    # Debian 13 is merged-/usr: the binary is under /usr/bin in the package.
    assert PackageRoot([trixie.path]).exists("/usr/bin/busybox")
    state = default_cache_dir() / "apt" / "releases" / "trixie" / "amd64"
    sources = (state / "etc" / "sources.list").read_text()
    assert f"[signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian trixie main" in sources
    assert "trixie-security main" in sources
    # Signed lists only: apt keeps a release's lists after verifying its InRelease.
    assert list((state / "lists").glob("*_dists_trixie_InRelease"))


def test_a_release_without_its_signing_key_is_refused(tmp_path: Path) -> None:
    keyring = tmp_path / "empty.gpg"
    keyring.write_bytes(b"")
    archive = AptArchive(tmp_path / "cache", "amd64", "trixie", keyring=keyring)
    with pytest.raises(ReleaseError, match=r"^Debian 'trixie': apt-get update failed"):
        archive.update()
    missing = AptArchive(tmp_path / "cache", "amd64", "trixie", keyring=tmp_path / "none.gpg")
    with pytest.raises(
        FetchError, match=r"none\.gpg is missing \(install debian-archive-keyring\)"
    ):
        missing.update()


def test_an_unknown_package_names_the_release(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"no such package for amd64 in Debian trixie$"):
        fetch_packages(["no-such-package-kdb"], "x86_64", release="trixie")


def test_a_release_debian_does_not_have_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"^Debian 'nosuchrelease': apt-get update failed"):
        fetch_packages(["busybox-static"], "x86_64", release="nosuchrelease", cache_dir=tmp_path)


def test_a_program_brings_its_shared_libraries_and_says_why() -> None:
    """Issue 25: makedumpfile alone needed eight library packages listed by hand."""
    fetched = {package.name: package for package in fetch_packages(["makedumpfile"], "x86_64")}
    assert fetched["makedumpfile"].library_of == ""
    for library in ("libc6", "libdw1", "libelf1", "liblzo2-2", "zlib1g"):
        assert fetched[library].library_of == "makedumpfile", library
        assert fetched[library].requested == "makedumpfile"
    # Only libraries: makedumpfile's perl (for makedumpfile-R.pl) is not one.
    assert "perl" not in fetched and "perl-base" not in fetched
