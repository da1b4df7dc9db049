"""Private caches for tests: the shared cache's fetched packages, nothing derived.

A test that must see a cold cache, a damaged one, or one on a full disk gets
its own KDUMP_BUILD_CACHE: the .deb files and apt's package lists are the
shared cache's (linked, never written through here), the package indexes,
members, compressed archives, ELF facts, module indexes and apt resolutions
start empty.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

from builder.image.cache import ENTRY_SUFFIX, TEMPORARY_INFIX, decode_entry, default_cache_dir
from tests.support import recipes
from tests.support.paths import DEFAULT_RECIPE

# What apt's private state holds that a fetch reads but a warm fetch never writes.
APT_SHARED = ("lists", "cache", "status")


def private_cache(directory: Path, *, shared: Path | None = None,
                  arches: tuple[str, ...] = ("amd64",)) -> Path:  # fmt: skip
    """Make `directory` a cache with the shared packages and empty derived caches."""
    shared = shared or default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "debs").symlink_to(shared / "debs")
    for arch in arches:
        state, ours = shared / "apt" / arch, directory / "apt" / arch
        ours.mkdir(parents=True)
        for name in APT_SHARED:
            if (state / name).exists():
                (ours / name).symlink_to(state / name)
        if (state / "updated").exists():
            # Its mtime is part of the resolution memo's key and the lists' age.
            shutil.copy2(state / "updated", ours / "updated")
    return directory


def entries(cache: Path) -> Iterator[Path]:
    """Every entry file in the derived part of `cache` (not following its links)."""
    for directory, _, files in sorted(os.walk(cache)):  # os.walk does not enter links
        for name in sorted(files):
            if name.endswith(ENTRY_SUFFIX):
                yield Path(directory) / name


def damaged_entries(cache: Path) -> list[Path]:
    """Entry files that do not decode (there must be none after any build)."""
    return [path for path in entries(cache) if decode_entry(path.read_bytes()) is None]


def temporary_files(cache: Path) -> list[Path]:
    """Temporary files a writer left (there must be none once writers ended)."""
    return [
        Path(directory) / name
        for directory, _, files in os.walk(cache)
        for name in files
        if TEMPORARY_INFIX in name
    ]


# Modules of the small recipes below, and the ones a variant adds.
SMALL_MODULES = ("virtio_pci", "virtio_blk", "ext4")
MORE_MODULES = (*SMALL_MODULES, "virtio_net", "vfat")


def small_kernel_package(path: Path) -> Path:
    """Debian's kernel package cut down to /boot and the modules the small recipes load.

    The real bytes of the default recipe's kernel, in a .tar.gz that reads in
    a second instead of the ten a cold scan of the whole package takes.
    """
    from builder.image.fetch import fetch_packages
    from builder.image.modules import ModuleIndex
    from builder.image.packages import PackageRoot
    from builder.image.pipeline import package_cache

    kernel = fetch_packages(["linux-image-amd64"], "x86_64")
    # With the package cache: what a build reads of the package is in its member cache.
    root = PackageRoot([package.path for package in kernel], package_cache())
    (image,) = root.glob("/boot/vmlinuz-*")
    version = image.removeprefix("/boot/vmlinuz-")
    base = f"/lib/modules/{version}"
    wanted = [image, f"/boot/config-{version}"]
    wanted += [f"{base}/{name}" for name in ("modules.builtin", "modules.builtin.modinfo")]
    index = ModuleIndex(root, version, default_cache_dir() / "modules")
    wanted += [module.path for module in index.load_order(MORE_MODULES, "small kernel")]
    # gzip's header would carry the time: mtime 0 keeps the bytes, so the package's
    # sha256 and what the shared cache keeps under it, the same from run to run.
    with (
        gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w") as archive,
    ):
        for name in sorted(set(wanted)):
            data = root.read_bytes(name)
            info = tarfile.TarInfo("." + name)
            info.size, info.mode = len(data), root.lookup(name).mode
            archive.addfile(info, io.BytesIO(data))
    return path


def small_recipe(path: Path, kernel_package: Path, changes: dict[str, dict[str, object]]) -> Path:
    """The default recipe on `kernel_package` (the rest fetched as usual), fast compression."""
    default = tomllib.loads(DEFAULT_RECIPE.read_text())
    packages = [name for name in default["source"]["packages"] if not name.startswith("linux-")]
    initrd: dict[str, object] = {"compression_level": 3, "modules": list(SMALL_MODULES)}
    initrd.update(changes.get("initrd", {}))
    edits: dict[str, dict[str, object]] = {
        "source": {"packages": packages, "package_files": [str(kernel_package)]},
        **changes,
        "initrd": initrd,
    }
    return recipes.write_recipe(path, edits)
