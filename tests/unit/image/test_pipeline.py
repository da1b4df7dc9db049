"""Build-level features on the real Debian packages: extra binaries and files,
script interpreters, early microcode, host-only modules, cold versus warm caches."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest

from builder.binfmt.cpio import read_initrd
from builder.errors import RecipeError
from builder.image.fetch import FetchedPackage
from builder.image.outputs import manifest
from builder.image.pipeline import plan_build
from builder.image.programs import script_interpreter
from builder.recipe.parse import load_recipe
from tests.support import caches
from tests.support.packages import write_package
from tests.support.paths import DEFAULT_RECIPE
from tests.support.recipes import DELETE, write_recipe

NO_MODULES = "modules = []\n"


def package(path: Path, files: dict[str, bytes | str], mode: int = 0o755) -> Path:
    """A .tar.gz package: bytes are files, str are symlink targets."""
    return write_package(path, files, mode=mode)


def recipe_with(
    tmp_path: Path, initrd_lines: str, package_files: Sequence[str] = (), **sections: object
) -> Path:
    """The default recipe with these [initrd] keys (TOML text) and package files added."""
    changes: dict[str, dict[str, object]] = {"initrd": tomllib.loads(initrd_lines)}
    if package_files:
        changes["source"] = {"package_files": list(package_files)}
    for section, values in sections.items():
        assert isinstance(values, dict)
        changes.setdefault(section, {}).update(values)
    return write_recipe(tmp_path / "recipe.toml", changes)


def members(recipe: Path) -> dict[str, object]:
    result = plan_build(load_recipe(recipe))
    entries = read_initrd(result.initrd)
    return {entry.path: entry for entry in entries}


def test_script_interpreter() -> None:
    assert script_interpreter(b"#!/bin/sh -e\nx") == ("/bin/sh", "-e")
    assert script_interpreter(b"#! /usr/bin/env  python3\n") == ("/usr/bin/env", "python3")
    assert script_interpreter(b"\x7fELF") is None


def test_extra_binaries_follow_interpreters_and_extra_files(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files/hook.conf").write_text("from the recipe\n")
    package(
        tmp_path / "extra.tar.gz",
        {
            "./usr/bin/hook.sh": b"#!/bin/sh\necho hook\n",
            "./usr/bin/tool": b"#!/usr/bin/env awk -f\n",
            "./usr/bin/chained": b"#!/usr/bin/hook.sh\n",
            "./etc/extra.conf": b"in the source root\n",
        },
    )
    recipe = recipe_with(
        tmp_path,
        NO_MODULES
        + 'extra_binaries = ["/usr/bin/chained", "/usr/bin/tool",'
        + ' "/usr/lib/x86_64-linux-gnu/libzstd.so.1"]\n'
        + 'extra_files = ["/etc/extra.conf", "/etc/hook.conf=recipe:files/hook.conf",'
        + ' "/etc/copy.conf=root:/etc/extra.conf"]\n',
        ["extra.tar.gz"],
    )
    found = members(recipe)
    assert found["/usr/bin/chained"].data == b"#!/usr/bin/hook.sh\n"  # type: ignore[attr-defined]
    assert found["/usr/bin/hook.sh"].data.startswith(b"#!/bin/sh")  # type: ignore[attr-defined]
    # Interpreters busybox provides are links to it.
    assert found["/usr/bin/env"].target == "/bin/busybox"  # type: ignore[attr-defined]
    assert found["/usr/bin/awk"].target == "/bin/busybox"  # type: ignore[attr-defined]
    assert found["/bin/sh"].target == "/bin/busybox"  # type: ignore[attr-defined]
    # An ELF library named directly comes with its soname link chain and its needs.
    assert found["/usr/lib/x86_64-linux-gnu/libzstd.so.1"].target.startswith("libzstd")  # type: ignore[attr-defined]
    assert any(path.endswith("/libc.so.6") for path in found)
    assert found["/etc/extra.conf"].data == b"in the source root\n"  # type: ignore[attr-defined]
    assert found["/etc/copy.conf"].data == b"in the source root\n"  # type: ignore[attr-defined]
    assert found["/etc/hook.conf"].data == b"from the recipe\n"  # type: ignore[attr-defined]


def test_host_files_only_when_named(tmp_path: Path) -> None:
    host_file = tmp_path / "host-only.txt"
    host_file.write_text("host\n")
    recipe = recipe_with(tmp_path, NO_MODULES + 'extra_files = ["/etc/hostname"]\n')
    # /etc/hostname exists on this host but not in the packages: not taken from the host.
    with pytest.raises(RecipeError, match=r"initrd.extra_files: item 0: .*/etc/hostname"):
        members(recipe)
    recipe = recipe_with(tmp_path, NO_MODULES + f'extra_files = ["/etc/h=host:{host_file}"]\n')
    assert members(recipe)["/etc/h"].data == b"host\n"  # type: ignore[attr-defined]


def test_missing_interpreter_names_the_item(tmp_path: Path) -> None:
    package(tmp_path / "extra.tar.gz", {"./usr/bin/x.pl": b"#!/usr/bin/perl\n"})
    recipe = recipe_with(
        tmp_path, NO_MODULES + 'extra_binaries = ["/usr/bin/x.pl"]\n', ["extra.tar.gz"]
    )
    with pytest.raises(RecipeError, match=r"initrd.extra_binaries: item 0: .*/usr/bin/perl"):
        members(recipe)


def test_early_microcode_from_vendor_files(tmp_path: Path) -> None:
    package(
        tmp_path / "ucode.tar.gz",
        {
            "./lib/firmware/intel-ucode/06-8e-09": b"second",
            "./lib/firmware/intel-ucode/06-55-04": b"first-",
            "./lib/firmware/amd-ucode/microcode_amd_fam17h.bin": b"amd17",
            "./lib/firmware/amd-ucode/microcode_amd_fam17h.bin.asc": b"signature",
        },
        0o644,
    )
    recipe = recipe_with(tmp_path, NO_MODULES + 'microcode = ["intel", "amd"]\n', ["ucode.tar.gz"])
    result = plan_build(load_recipe(recipe))
    entries = read_initrd(result.initrd)
    early = {entry.path: entry.data for entry in entries if entry.segment == 0}
    assert early["/kernel/x86/microcode/GenuineIntel.bin"] == b"first-second"
    assert early["/kernel/x86/microcode/AuthenticAMD.bin"] == b"amd17"
    assert all(entry.segment > 0 for entry in entries if not entry.path.startswith("/kernel"))
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=result.initrd, capture_output=True, check=True
    ).stdout.decode()
    assert "kernel/x86/microcode/GenuineIntel.bin" in listing.split()

    recipe = recipe_with(tmp_path, NO_MODULES + 'microcode = ["intel"]\n')
    with pytest.raises(RecipeError, match=r"initrd.microcode: 'intel' but nothing matches"):
        plan_build(load_recipe(recipe))


def test_auto_modules_on_this_host(tmp_path: Path) -> None:
    """Host-only: the drivers of the disk `/` is on (virtio on this machine), and ext4."""
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    fields = next(line.split() for line in mounts if line.split()[4] == "/")
    device, fstype = fields[fields.index("-") + 2], fields[fields.index("-") + 1]
    recipe = recipe_with(tmp_path, 'modules = "auto"\n', dump={"device": device, "fstype": fstype})
    found = members(recipe)
    modules_list = found["/etc/kdump/modules"].data.decode().split()  # type: ignore[attr-defined]
    names = [os.path.basename(path).split(".ko")[0] for path in modules_list]
    rdev = os.stat(device).st_rdev
    disk = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}").resolve()
    driver = next(p / "driver" for p in [disk, *disk.parents] if (p / "driver").exists())
    assert driver.resolve().name.replace("-", "_") in [n.replace("-", "_") for n in names]
    assert fstype in names


def test_cold_and_warm_caches_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build with empty index, member, module and compression caches equals a warm one."""
    recipe = load_recipe(DEFAULT_RECIPE)
    warm = plan_build(recipe)
    # Same fetched packages and apt lists, nothing else.
    cold_cache = caches.private_cache(tmp_path / "cache")
    monkeypatch.setenv("KDUMP_BUILD_CACHE", str(cold_cache))
    cold = plan_build(recipe)
    assert (cold_cache / "packages").is_dir() and (cold_cache / "modules").is_dir()
    again = plan_build(recipe)
    assert cold.initrd == warm.initrd == again.initrd
    assert manifest(cold) == manifest(warm)


def test_firmware_from_the_source_or_listed_missing(tmp_path: Path) -> None:
    """e100 names three firmware files; one is in a package of the recipe, two are not."""
    package(
        tmp_path / "fw.tar.gz",
        {"./lib/firmware/e100/d101m_ucode.bin": b"microcode for d101m"},
        0o644,
    )
    recipe = recipe_with(tmp_path, 'modules = ["e100"]\n', ["fw.tar.gz"])
    result = plan_build(load_recipe(recipe))
    found = {entry.path: entry for entry in read_initrd(result.initrd)}
    assert found["/lib/firmware/e100/d101m_ucode.bin"].data == b"microcode for d101m"
    assert manifest(result)["initrd"]["missing_firmware"] == [
        "e100/d102e_ucode.bin",
        "e100/d101s_ucode.bin",
    ]


def test_a_merged_usr_sysroot_builds_like_its_packages(
    tmp_path: Path, default_packages: list[FetchedPackage]
) -> None:
    """Debian 12 hosts have /bin, /sbin, /lib and /lib64 as links into /usr (usrmerge):
    a build from such a root mirrors the links and puts every program where they lead."""
    sysroot = tmp_path / "root"
    for package in default_packages:
        subprocess.run(["dpkg-deb", "-x", str(package.path), str(sysroot)], check=True)
    for top in ("bin", "sbin", "lib", "lib64"):
        merged = sysroot / "usr" / top
        merged.mkdir(parents=True, exist_ok=True)
        if (sysroot / top).is_dir():
            shutil.copytree(sysroot / top, merged, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(sysroot / top)
        (sysroot / top).symlink_to(f"usr/{top}")
    recipe = write_recipe(
        tmp_path / "merged.toml", {"source": {"packages": DELETE, "root": str(sysroot)}}
    )
    found = members(recipe)
    for top in ("bin", "sbin", "lib", "lib64"):
        link = found[f"/{top}"]
        assert stat.S_ISLNK(link.mode) and link.target == f"usr/{top}", top  # type: ignore[attr-defined]
    assert stat.S_ISLNK(found["/usr/bin/sh"].mode)  # type: ignore[attr-defined]
    assert stat.S_ISREG(found["/usr/bin/busybox"].mode)  # type: ignore[attr-defined]
    assert any(path.startswith("/usr/lib/modules/") for path in found)
    assert not any(path.startswith(("/bin/", "/lib/")) for path in found)
