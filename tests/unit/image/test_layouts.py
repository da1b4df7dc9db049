"""Kernel layouts: Debian 12's /boot and Debian 14's /usr/lib/modules/VER, on real packages.

Debian 14 ("forky") split the kernel: linux-image-VER depends on linux-base-VER
(the config), linux-binary-VER (the image) and linux-modules-VER. The packages
are fetched with the project's own fetch (cached); linux-modules is left out of
the roots here, it holds no image or config.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.image.cache import default_cache_dir
from builder.image.cmdline import config_arguments
from builder.image.fetch import FetchedPackage, fetch_packages
from builder.image.kernel import capture_kernel
from builder.image.layouts import find_config, find_images
from builder.image.modules import ModuleIndex
from builder.image.packages import PackageRoot
from builder.image.pipeline import package_cache
from builder.image.sources import DirectoryRoot
from builder.recipe.parse import load_recipe
from tests.support.paths import REPO
from tests.support.recipes import write_recipe

RECIPES = REPO / "recipes"


@functools.cache
def _kernel_packages(release: str, arch: str = "x86_64") -> tuple[FetchedPackage, ...]:
    flavour = {"x86_64": "amd64", "riscv64": "riscv64"}[arch]
    return tuple(fetch_packages([f"linux-image-{flavour}"], arch, release=release))


def _root(
    release: str, *prefixes: str, extra: tuple[str, ...] = (), arch: str = "x86_64"
) -> PackageRoot:
    packages = [p.path for p in _kernel_packages(release, arch) if p.name.startswith(prefixes)]
    if extra:
        packages += [p.path for p in fetch_packages(extra, "x86_64", release=release)]
    return PackageRoot(packages, package_cache())


def test_forky_splits_the_kernel_into_base_binary_and_modules() -> None:
    names = {package.name.split("-7.")[0] for package in _kernel_packages("forky")}
    assert {"linux-base", "linux-binary", "linux-modules"} <= names


def test_forky_image_and_config_are_found_in_the_modules_directory() -> None:
    root = _root("forky", "linux-base-7", "linux-binary-7")
    assert root.glob("/boot/vmlinuz-*") == []
    (image,) = find_images(root, "/boot/vmlinuz-*")
    version = image.split("/")[4]
    assert image == f"/usr/lib/modules/{version}/vmlinuz"
    assert find_config(root, version) == f"/usr/lib/modules/{version}/config"


def test_bookworm_image_and_config_stay_in_boot() -> None:
    root = _root("", "linux-image-6")
    (image,) = find_images(root, "/boot/vmlinuz-*")
    version = image.removeprefix("/boot/vmlinuz-")
    assert find_config(root, version) == f"/boot/config-{version}"


def test_the_default_pattern_builds_the_forky_capture_kernel(tmp_path: Path) -> None:
    """capture_kernel reads the config too: KEXEC/CRASH_DUMP checked from the modules dir."""
    root = _root("forky", "linux-base-7", "linux-binary-7")
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", {"source": {"release": "forky"}}))
    assert recipe.kernel.image == "/boot/vmlinuz-*"
    kernel = capture_kernel(recipe, root)
    assert kernel.version.startswith("7.")
    assert kernel.path == f"/usr/lib/modules/{kernel.version}/vmlinuz"
    assert kernel.plan.config_checked


def test_forky_modules_index_reads_the_config_from_the_modules_directory() -> None:
    # base-files holds the /lib -> usr/lib link that /lib/modules goes through.
    root = _root("forky", "linux-base-7", "linux-modules-7", extra=("base-files",))
    version = root.listdir("/usr/lib/modules")[0]
    index = ModuleIndex(root, version, default_cache_dir() / "modules")
    assert index.config["CONFIG_CRASH_DUMP"] == "y"
    assert "ext4" in index.paths


def test_boot_wins_over_the_modules_directory(tmp_path: Path) -> None:
    """An installed Debian 14 host has both; /boot is what the boot loader starts."""
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz-7.2").write_bytes(b"boot")
    (tmp_path / "usr/lib/modules/7.2").mkdir(parents=True)
    (tmp_path / "usr/lib/modules/7.2/vmlinuz").write_bytes(b"modules")
    (tmp_path / "usr/lib/modules/7.2/config").write_text("")
    root = DirectoryRoot(tmp_path)
    assert find_images(root, "/boot/vmlinuz-*") == ["/boot/vmlinuz-7.2"]
    assert find_config(root, "7.2") == "/usr/lib/modules/7.2/config"
    assert find_images(root, "/boot/vmlinuz-7.3") == []


def test_nothing_found_names_every_place_looked(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/modules").mkdir(parents=True)
    recipe = load_recipe(write_recipe(tmp_path / "r.toml"))
    with pytest.raises(RecipeError) as raised:
        capture_kernel(recipe, DirectoryRoot(tmp_path))
    assert str(raised.value) == (
        f"{tmp_path}/r.toml: kernel.image: '/boot/vmlinuz-*' must match exactly one file in "
        f"{tmp_path}, found nothing (nor in /usr/lib/modules/*/ or /lib/modules/*/)"
    )


def test_forky_riscv64_is_found_by_the_debian13_riscv64_pattern(tmp_path: Path) -> None:
    """Debian 13 installs /boot/vmlinux-VER; Debian 14's package has .../VER/vmlinuz.

    Its config reserves a 128 MiB CMA area by default: the capture line gets cma=0.
    """
    root = _root("forky", "linux-base-7", "linux-binary-7", arch="riscv64")
    recipe = load_recipe(RECIPES / "qemu-riscv64.toml")
    assert recipe.kernel.image == "/boot/vmlinux-*"
    kernel = capture_kernel(recipe, root)
    assert kernel.path == f"/usr/lib/modules/{kernel.version}/vmlinuz"
    assert kernel.config["CONFIG_CMA_SIZE_MBYTES"] == "128"
    assert config_arguments(kernel.config, recipe.kernel.cmdline) == ["cma=0"]
