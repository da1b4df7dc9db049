"""`enable --root DIR` on an unbooted root tree made of real Debian packages: the recipe,
captures and switches come from and go into DIR only, and bad trees are refused in one
line with nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.errors import SourceError
from builder.host import captures
from builder.host.armtree import WANTS, enable_tree, enable_unit
from builder.host.paths import HostPaths
from builder.host.probe import installed_kernels
from builder.image.fetch import FetchedPackage, fetch_packages
from builder.recipe.parse import load_recipe
from builder.units import GiB
from tests.conftest import run_cli
from tests.support.paths import REPO

FSTAB = "UUID=6b1f0a2e-5d7c-4c1e-9a53-2f0de1c0ffee / ext4 errors=remount-ro 0 1\n"
PACKAGED_UNIT = "usr/lib/systemd/system/kdump-build.service"


def dpkg_status(arch: str) -> str:
    return f"Package: dpkg\nStatus: install ok installed\nArchitecture: {arch}\n\n"


def make_tree(root: Path, packages: list[FetchedPackage], debian_arch: str) -> Path:
    """A Debian tree as a pipeline leaves it: packages unpacked, fstab, GRUB defaults, the
    kdump-build package's unit; never booted."""
    root.mkdir()
    for package in packages:
        subprocess.run(["dpkg-deb", "-x", str(package.path), str(root)], check=True)
    files = {
        "etc/os-release": 'ID=debian\nVERSION_ID="12"\n',
        "etc/fstab": FSTAB,
        "etc/default/grub": 'GRUB_CMDLINE_LINUX="console=ttyS0,115200"\n',
        "var/lib/dpkg/status": dpkg_status(debian_arch),
        PACKAGED_UNIT: "[Unit]\nDescription=kdump-build (the package's)\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory, default_packages: list[FetchedPackage]
) -> Path:
    return make_tree(tmp_path_factory.mktemp("pristine") / "tree", default_packages, "amd64")


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def listing(root: Path) -> dict[str, str]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = (os.readlink(path) if path.is_symlink()
                                                  else str(path.stat().st_size))  # fmt: skip
    return found


def test_enable_root_arms_the_tree_from_its_own_files(tree: Path) -> None:
    lines: list[str] = []
    enable_tree(tree, 2 * GiB, lines.append)
    paths = HostPaths(tree)
    (version,) = installed_kernels(paths)
    recipe = load_recipe(paths.recipe)
    assert recipe.source.root == "/" and recipe.target.arch.value == "x86_64"
    assert recipe.initrd.modules[0] == "ext4"  # the fstab's filesystem, no host /sys
    assert 'device = "UUID=6b1f0a2e-5d7c-4c1e-9a53-2f0de1c0ffee"' in paths.recipe.read_text()
    assert recipe.kernel.cmdline_append == ("console=ttyS0,115200",)
    # The record names what the booted tree will see, so its first boot only loads.
    record = captures.read_record(paths.capture(version))
    assert record is not None
    image = tree / f"boot/vmlinuz-{version}"
    assert record.inputs.recipe == "/etc/kdump-build/recipe.toml"
    assert record.inputs.kernel_image == f"/boot/vmlinuz-{version}"
    as_booted = captures.Inputs(
        "/etc/kdump-build/recipe.toml",
        captures.current_inputs(paths.recipe, image).recipe_sha256,
        f"/boot/vmlinuz-{version}",
        image.stat().st_size,
        image.stat().st_mtime_ns,
        captures.builder_version(),
    )
    assert captures.staleness(paths.capture(version), as_booted) is None
    assert (tree / "etc/kdump-build/enabled").read_text().splitlines()[-1] == (
        "/etc/kdump-build/recipe.toml"
    )
    assert os.readlink(tree / WANTS) == f"/{PACKAGED_UNIT}"
    assert "crashkernel=" in paths.grub_dropin.read_text()
    assert not paths.lock.exists()  # no lock left in the tree's /run
    assert lines[-1] == f"armed {tree}: at its first boot the service loads the capture"
    # Nothing written names where this host keeps the tree (the manifest's origins either).
    written = [path for path in (paths.config_dir, paths.capture(version), paths.grub_dropin)]
    for path in (p for top in written for p in [top, *top.rglob("*")] if p.is_file()):
        if path.suffix in (".json", ".toml", ".txt", ".cfg", ""):
            assert str(tree) not in path.read_text(errors="replace"), path
    assert json.loads((paths.capture(version) / "manifest.json").read_text())["members"]


def test_a_second_run_keeps_the_recipe_and_drops_captures_of_gone_kernels(tree: Path) -> None:
    enable_tree(tree, 2 * GiB, lambda line: None)
    paths = HostPaths(tree)
    (version,) = installed_kernels(paths)
    gone = paths.capture("6.1.0-0-amd64")  # a capture of ours for a kernel not in the tree
    shutil.copytree(paths.capture(version), gone)
    lines: list[str] = []
    enable_tree(tree, 2 * GiB, lines.append)
    assert lines[0].startswith(f"recipe: {tree}/etc/kdump-build/recipe.toml (kept")
    assert f"capture: removed {gone} (kernel no longer in the tree)" in lines
    assert not gone.exists() and paths.capture(version).is_dir()


def test_the_wants_link_names_the_unit_where_the_package_put_it(tree: Path) -> None:
    """Merged /usr (lib a link to usr/lib): the link names /usr/lib's unit, as `systemctl
    enable` does on Debian 13, not the alias; an earlier build's /lib unit still serves."""
    paths = HostPaths(tree)
    if (tree / "lib").is_dir():
        shutil.copytree(tree / "lib", tree / "usr/lib", symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(tree / "lib")
    (tree / "lib").symlink_to("usr/lib")
    assert os.readlink(enable_unit(paths)) == f"/{PACKAGED_UNIT}"
    (tree / WANTS).unlink()
    (tree / "lib").unlink()
    earlier = tree / "lib/systemd/system/kdump-build.service"
    earlier.parent.mkdir(parents=True)
    os.replace(tree / PACKAGED_UNIT, earlier)
    assert os.readlink(enable_unit(paths)) == "/lib/systemd/system/kdump-build.service"


def test_a_tree_of_another_architecture_is_armed_for_its_own(tmp_path: Path) -> None:
    # Cross arming: an arm64 tree (Debian's arm64 kernel, busybox, makedumpfile) armed on
    # this host, whatever its architecture: the recipe and capture follow the tree's dpkg.
    arm64 = load_recipe(REPO / "recipes/qemu-arm64.toml")
    packages = fetch_packages(arm64.source.packages, Arch.AARCH64)
    tree = make_tree(tmp_path / "arm64", packages, "arm64")
    lines: list[str] = []
    enable_tree(tree, 2 * GiB, lines.append)
    paths = HostPaths(tree)
    assert load_recipe(paths.recipe).target.arch == Arch.AARCH64
    (version,) = installed_kernels(paths)
    assert version.endswith("-arm64")
    assert (paths.capture(version) / "vmlinuz").read_bytes() == (
        paths.kernel_image(version).read_bytes()
    )
    assert lines[-1] == f"armed {tree}: at its first boot the service loads the capture"


def test_a_tree_whose_programs_are_not_of_its_architecture_is_refused(tree: Path) -> None:
    # The tree says arm64 but holds amd64 programs: the build refuses, nothing is left.
    (tree / "var/lib/dpkg/status").write_text(dpkg_status("arm64"))
    with pytest.raises(SourceError, match=r"is built for x86_64 .*, not aarch64"):
        enable_tree(tree, 2 * GiB, lambda line: None)
    for ours in ("etc/kdump-build", "var/lib/kdump-build", WANTS, "etc/default/grub.d"):
        assert not (tree / ours).exists(), ours


def refusal(root: Path) -> str:
    result = run_cli("enable", "--root", str(root), "--ram", "2G")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def test_refusals_name_the_path_and_write_nothing(tree: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert refusal(missing) == f"kdump-build: error: {missing}: no such directory"
    assert "is this machine's own root" in refusal(Path("/"))
    (tree / "etc/default/grub.d").symlink_to("/etc/default")
    before = listing(tree)
    assert refusal(tree).startswith(
        f"kdump-build: error: {tree}/etc/default/grub.d/kdump-build.cfg: leads out of {tree}"
    )
    assert listing(tree) == before
    (tree / "etc/default/grub.d").unlink()
    (tree / "etc/fstab").write_text("/dev/vda1 / ext4 defaults 0 1\n")
    assert "name it by UUID= or LABEL=" in refusal(tree)
    for name in (PACKAGED_UNIT, "etc/os-release"):
        (tree / name).unlink()
        assert refusal(tree).startswith(f"kdump-build: error: {tree}: ")
    for ours in ("etc/kdump-build", "var/lib/kdump-build", WANTS, "etc/default/grub.d"):
        assert not (tree / ours).exists(), ours


def test_a_tree_without_a_kernel_is_refused(tree: Path) -> None:
    for image in (tree / "boot").glob("vmlinuz-*"):
        image.unlink()
    assert refusal(tree) == (f"kdump-build: error: {tree}: no kernel installed in it (no "
                             "boot/vmlinuz-VERSION or usr/lib/modules/VERSION/vmlinuz with "
                             "its modules)")  # fmt: skip
    assert not (tree / "etc/kdump-build").exists()


def test_root_needs_ram_and_takes_no_recipe(tree: Path) -> None:
    result = run_cli("enable", "--root", str(tree))
    assert result.returncode == 2 and "Invalid value for --ram: needed with --root" in result.stderr
    result = run_cli("enable", "--ram", "2G")
    assert result.returncode == 2 and "only with --root" in result.stderr
