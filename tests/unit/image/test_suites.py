"""Suites: a backports release, and packages picked from another suite with their libraries.

Real Debian archives through the project's fetch (lists and packages cached).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import FetchError, RecipeError
from builder.image.fetch import fetch_packages
from builder.recipe.parse import load_recipe
from tests.support.recipes import write_recipe

BACKPORTED = "~bpo13+1"


def _versions(names: list[str], release: str) -> dict[str, str]:
    return {p.name: p.version for p in fetch_packages(names, "x86_64", release=release)}


def test_a_kernel_picked_from_trixie_backports() -> None:
    versions = _versions(["linux-image-amd64/trixie-backports", "busybox-static"], "trixie")
    kernel = [name for name in versions if name.startswith("linux-binary-")]
    assert len(kernel) == 1 and kernel[0].startswith("linux-binary-7."), versions
    assert versions[kernel[0]].endswith(BACKPORTED)
    assert not versions["busybox-static"].endswith(BACKPORTED)


def test_makedumpfile_picked_from_a_newer_release_brings_its_libraries() -> None:
    """makedumpfile/forky: libdw1t64 (named, a dependency) follows; busybox stays Debian 13's."""
    names = ["makedumpfile/forky", "libdw1t64", "busybox-static", "libc6"]
    picked = _versions(names, "trixie")
    plain = _versions(["makedumpfile", "libdw1t64", "busybox-static", "libc6"], "trixie")
    forky = _versions(["makedumpfile", "libdw1t64"], "forky")
    assert picked["makedumpfile"] == forky["makedumpfile"] != plain["makedumpfile"]
    assert picked["libdw1t64"] == forky["libdw1t64"]
    assert picked["busybox-static"] == plain["busybox-static"]


def test_a_pick_without_a_release_adds_its_suite_to_the_hosts_sources(tmp_path: Path) -> None:
    """No source.release: the host's configured sources, plus the picked suite for the pick
    and the libraries it names; busybox stays the host's."""
    picks = ["makedumpfile/forky", "libdw1t64", "busybox-static", "libc6"]
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", {"source": {"packages": picks}}))
    assert recipe.source.release == ""
    picked = _versions(list(recipe.source.packages), recipe.source.release)
    host = _versions(["makedumpfile", "busybox-static"], "")
    forky = _versions(["makedumpfile", "libdw1t64", "libc6"], "forky")
    assert picked["makedumpfile"] == forky["makedumpfile"] != host["makedumpfile"]
    assert (picked["libdw1t64"], picked["libc6"]) == (forky["libdw1t64"], forky["libc6"])
    assert picked["busybox-static"] == host["busybox-static"]


def test_a_pick_from_the_hosts_sources_names_them_when_refused() -> None:
    with pytest.raises(FetchError) as raised:
        fetch_packages(["busybox-static/trixie-backports"], "x86_64")
    assert str(raised.value) == (
        "'busybox-static/trixie-backports': no such package in trixie-backports "
        "for amd64 from the host's sources"
    )


def test_a_release_that_is_not_a_suite_name_is_refused(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.toml", {"source": {"release": "trixie-updates"}})
    with pytest.raises(RecipeError, match=r"source\.release: .*'trixie-updates' is not a Debian"):
        load_recipe(recipe)


def test_a_pick_from_a_suite_without_the_package_is_refused() -> None:
    """apt would quietly take Debian 13's busybox-static; the pick says trixie-backports."""
    with pytest.raises(FetchError) as raised:
        fetch_packages(["busybox-static/trixie-backports"], "x86_64", release="trixie")
    assert str(raised.value) == (
        "'busybox-static/trixie-backports': no such package in trixie-backports "
        "for amd64 in Debian trixie"
    )
