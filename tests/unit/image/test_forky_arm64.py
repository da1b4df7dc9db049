"""Debian 14 (forky) arm64 from the Debian 12 arm64 recipe with only `source.release` changed.

Real packages, fetched with the project's own fetch (cached). Two things of
Debian 13 and later stood in the way: the t64 library renames (Debian 12's
libdw1 and libelf1 are virtual packages there, provided by libdw1t64 and
libelf1t64) and merged /usr (packages ship /usr/bin/busybox; the /bin ->
usr/bin link is base-files', which the recipe does not name). And one no
recipe change can fix: no makedumpfile release reads Debian 14's arm64 kernel.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.binfmt.kernelimg import ImageFormat, parse_kernel_image
from builder.compression import Compression
from builder.errors import FetchError
from builder.image.fetch import fetch_packages
from tests.conftest import run_cli
from tests.support.paths import REPO

pytestmark = pytest.mark.network

ARM64_RECIPE = REPO / "recipes" / "qemu-arm64.toml"


def _forky_recipe(tmp_path: Path, collector: str = "makedumpfile") -> Path:
    """recipes/qemu-arm64.toml with `release = "forky"` (and another `dump.collector`)."""
    text = ARM64_RECIPE.read_text().replace("[source]\n", '[source]\nrelease = "forky"\n')
    recipe = tmp_path / "forky.toml"
    recipe.write_text(text.replace('collector = "makedumpfile"', f'collector = "{collector}"'))
    return recipe


def test_the_debian12_arm64_recipe_with_only_the_release_changed_is_refused(
    tmp_path: Path,
) -> None:
    """Everything builds, but Debian 14's makedumpfile cannot read Debian 14's arm64
    kernel (4K pages, 52-bit VA): the capture would fail at dump time, so the build
    stops on the recipe's dump.collector."""
    recipe = _forky_recipe(tmp_path)
    outdir = tmp_path / "out"
    result = run_cli(str(recipe), "-o", str(outdir))
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert line == (
        f"kdump-build: error: {recipe}: dump.collector: makedumpfile 1.7.8 cannot read kernel "
        "7.2.12+deb14-arm64 (4K pages with 52-bit virtual addresses, 5 page-table levels: "
        "CONFIG_ARM64_4K_PAGES=y, CONFIG_ARM64_VA_BITS=52): no makedumpfile release reads "
        'it yet; the dump would fail: collector = "copy" saves /proc/vmcore whole'
    )
    assert not outdir.exists()


def test_with_the_copy_collector_it_builds_from_debian14s_packages(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = run_cli(str(_forky_recipe(tmp_path, "copy")), "-o", str(outdir),
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    kernel = json.loads(result.stdout)["kernel"]
    assert kernel.startswith("7.") and kernel.endswith("+deb14-arm64"), kernel
    manifest = json.loads((outdir / "manifest.json").read_text())
    requested = {package["requested"]: package["name"] for package in manifest["packages"]
                 if not package.get("library_of")}  # fmt: skip
    assert requested["libdw1"] == "libdw1t64" and requested["libelf1"] == "libelf1t64"
    assert "base-files" not in {package["name"] for package in manifest["packages"]}
    members = {member["path"]: member for member in manifest["members"]}
    # recipe's busybox = "/bin/busybox": found through the link no package holds.
    assert (members["/bin"]["target"], members["/bin"]["origin"]) == ("usr/bin", "merged-/usr")
    assert members["/usr/bin/busybox"]["type"] == "file"
    # Debian 14's arm64 vmlinuz is a plain Image, not an EFI zboot one (CONFIG_EFI_ZBOOT unset).
    image = parse_kernel_image((outdir / "vmlinuz").read_bytes(), "vmlinuz")
    assert (image.format, image.arch, image.compression) == (
        ImageFormat.IMAGE, Arch.AARCH64, Compression.NONE
    )  # fmt: skip


def test_a_virtual_name_means_the_one_package_that_provides_it() -> None:
    fetched = fetch_packages(["libdw1"], "aarch64", release="forky")
    (named,) = [package for package in fetched if not package.library_of]
    assert (named.requested, named.name) == ("libdw1", "libdw1t64")
    assert [package.name for package in fetched].count("libdw1t64") == 1


def test_a_virtual_name_with_several_providers_is_refused() -> None:
    with pytest.raises(FetchError) as caught:
        fetch_packages(["awk"], "aarch64", release="forky")
    assert str(caught.value) == (
        "'awk': no such package for arm64 in Debian forky; it is provided by "
        "gawk, mawk, original-awk: name one of them"
    )


def test_a_name_nothing_provides_is_still_unknown() -> None:
    with pytest.raises(
        FetchError, match=r"^'no-such-package-kdb': no such package for arm64 in Debian forky$"
    ):
        fetch_packages(["no-such-package-kdb"], "aarch64", release="forky")
