"""A recipe whose source is a sysroot directory, as a Yocto or Buildroot build leaves
one, builds the same capture as the Debian packages it was made of.

The sysroot is the real Debian packages of each bundled recipe (x86_64, arm64,
riscv64), fetched through the package cache and unpacked by Debian's own
`dpkg-deb -x`, not by our package reader. The capture built from it must be
the Debian-source build byte for byte (initrd, kernel, command line, fit);
only the manifest's provenance differs: no packages, and each member's origin
is its file in the sysroot instead of its package.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.image.outputs import manifest, output_files
from builder.image.pipeline import BuildResult, plan_build
from builder.recipe.parse import load_recipe, parse_recipe
from tests.support.paths import REPO
from tests.support.recipes import recipe_text

ARCH_RECIPES = ("qemu-x86_64", "qemu-arm64", "qemu-riscv64")


def _unpack(build: BuildResult, sysroot: Path) -> None:
    """Every package of `build` unpacked into `sysroot`, base-files first: on a merged-/usr
    release its /bin and /lib links must exist before anything is put through them."""
    packages = sorted(build.packages, key=lambda package: package.name != "base-files")
    for package in packages:
        subprocess.run(["dpkg-deb", "-x", str(package.path), str(sysroot)], check=True)


def _sysroot_recipe(name: str, sysroot: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.toml"
    base = REPO / "recipes" / f"{name}.toml"
    path.write_text(recipe_text(replace={"source": {"root": str(sysroot)}}, base=base))
    return path


@pytest.mark.parametrize("name", ARCH_RECIPES)
def test_a_sysroot_builds_the_capture_of_its_packages(name: str, tmp_path: Path) -> None:
    from_packages = plan_build(load_recipe(REPO / "recipes" / f"{name}.toml"))
    sysroot = tmp_path / "sysroot"
    _unpack(from_packages, sysroot)
    from_sysroot = plan_build(load_recipe(_sysroot_recipe(name, sysroot, tmp_path)))

    packaged, rooted = output_files(from_packages), output_files(from_sysroot)
    for file in ("initrd.img", "vmlinuz", "cmdline.txt", "fit.json"):
        assert rooted[file] == packaged[file], file
    # The manifest: the same capture, told from another source.
    expected, found = manifest(from_packages), manifest(from_sysroot)
    assert expected["packages"] and found["packages"] == []
    strip = {"packages": None, "members": None}
    assert {**found, **strip} == {**expected, **strip}
    assert [{**member, "origin": None} for member in found["members"]] == [
        {**member, "origin": None} for member in expected["members"]
    ]
    # A file a package brought comes from its file in the sysroot; what kdump-build
    # made (a busybox applet link, /init) is the same.
    names = {package["file"]: package["name"] for package in expected["packages"]}
    for was, now in zip(expected["members"], found["members"], strict=True):
        if was["origin"] in names or was["origin"] in names.values():
            assert now["origin"].startswith(f"{sysroot}/"), (was, now)
        else:
            assert now["origin"] == was["origin"], (was, now)
    assert json.loads(rooted["manifest.json"][0]) == found


def _recipe(tmp_path: Path, root: str, image: str = "/boot/vmlinuz-*") -> Path:
    path = tmp_path / "fw.toml"
    path.write_text(
        recipe_text(replace={"source": {"root": root}}, changes={"kernel": {"image": image}})
    )
    return path


def test_a_missing_sysroot_names_file_and_key(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, "sysroot-not-built"))
    with pytest.raises(RecipeError) as caught:
        plan_build(recipe)
    assert str(caught.value) == (
        f"{tmp_path}/fw.toml: source.root: {tmp_path}/sysroot-not-built does not exist"
    )
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RecipeError) as caught:
        plan_build(load_recipe(_recipe(tmp_path, "a-file")))
    assert str(caught.value) == (
        f"{tmp_path}/fw.toml: source.root: {tmp_path}/a-file is not a directory"
    )


def test_a_sysroot_without_the_kernel_names_file_and_key(tmp_path: Path) -> None:
    """A Buildroot root has its modules but not the image: the key to fix is kernel.image."""
    (tmp_path / "rootfs/lib/modules/6.1.0-buildroot").mkdir(parents=True)
    recipe = load_recipe(_recipe(tmp_path, "rootfs", "/boot/Image"))
    with pytest.raises(RecipeError) as caught:
        plan_build(recipe)
    assert str(caught.value) == (
        f"{tmp_path}/fw.toml: kernel.image: '/boot/Image' must match exactly one file in "
        f"{tmp_path}/rootfs, found nothing"
    )


def test_source_root_excludes_packages() -> None:
    text = '[source]\nroot = "/srv/rootfs"\npackages = ["busybox-static"]\n'
    text += '[dump]\ndevice = "/dev/vdb"\n'
    with pytest.raises(RecipeError, match=r"^r.toml: source.root: cannot be combined"):
        parse_recipe(text, Path("r.toml"))
