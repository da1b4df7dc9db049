"""Debian 14 (forky): the .deb installed by the tree's own apt, offline, and run there.

A forky root tree made with mmdebstrap (tests.support.trixie_tree with suite "forky":
test_armed_image's Debian 13 tree, of Debian 14; cached), the image pipeline played by
the host as in test_armed_image, without a boot:
  install  this checkout's .deb (scripts/build-deb, built on Debian 12) with the tree's
           apt, no network, beside forky's own makedumpfile and python3-typer,
           -zstandard, -libarchive-c and -lz4 (fetched when the tree was made)
  run      the tree's kdump-build in a chroot, on forky's Python and libraries:
           --version, --help
  arm      README's `enable --root` line, as written, run from the host: a capture for
           forky's kernel, whose image Debian 14 keeps in /usr/lib/modules/VERSION/
  hooks    in the chroot, what the package's kernel hooks run, on forky's Python:
           `kernel-removed VERSION` drops the capture, `kernel-installed VERSION` builds
           it again with forky's zstandard and libarchive-c
  own      `dpkg -S` names the package's files
  purge    apt-get purge: the tree's files as before the install, and no dpkg warning

Not booted: test_armed_image boots the same tree of Debian 13 and proves the load, the
crash and the dump there; here the question is whether the package installs and runs on
Debian 14's Python stack, which needs no QEMU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import trixie_tree
from tests.support.paths import REPO
from tests.vm.test_armed_image import PACKAGED, arm, gained_files

pytestmark = pytest.mark.vm

SUITE = "forky"
LIBRARIES = ("python3", "python3-typer", "python3-click", "python3-zstandard",
             "python3-libarchive-c", "python3-lz4", "makedumpfile")  # fmt: skip
# What the package's kernel hooks run (debian/package/etc/kernel/*.d), in a chroot with
# /proc mounted, as mmdebstrap's hooks have it.
HOOKS = r"""
capture=/var/lib/kdump-build/$1
sha256sum $capture/initrd.img $capture/vmlinuz $capture/cmdline.txt > /tmp/host-built
kdump-build kernel-removed "$1"
test ! -e $capture
kdump-build kernel-installed "$1"
sha256sum $capture/initrd.img $capture/vmlinuz $capture/cmdline.txt > /tmp/tree-built
cat /tmp/host-built
echo ---
cat /tmp/tree-built
"""


@dataclass(frozen=True)
class Forky:
    deb_version: str
    kernel_version: str
    libraries: str
    install: str
    version: str
    help: str
    arming: str
    capture: list[str]
    kernel_images: list[str]
    recorded_image: str
    hooks: str
    owners: str
    files_before: str
    dependency_files: str
    purge: str
    status: str
    files_after: str


def in_tree(root: Path, script: str, *arguments: str) -> str:
    """`script` in the tree's chroot, in a network and mount namespace of its own, with
    /proc mounted (by the host's mount: the tree has none) for that namespace only."""
    chroot = 'mount -t proc proc "$1/proc" && exec chroot "$@"'
    command = ["unshare", "--net", "--mount", "--fork", "sh", "-c", chroot, "sh", str(root),
               "sh", "-ec", script, "sh", *arguments]  # fmt: skip
    result = trixie_tree.run_in_tree(command, script)
    return result.stdout + result.stderr


def forky_kernel(root: Path) -> str:
    (version,) = os.listdir(root / "usr/lib/modules")
    return version


def run_scenario(root: Path, deb: Path, tree: trixie_tree.Tree) -> Forky:
    files = trixie_tree.FILES_SHELL
    files_before = in_tree(root, files + "files")
    dependencies = sorted(tree.deps.glob("*.deb"))
    install = trixie_tree.install_offline(root, [deb, *dependencies])
    names = " ".join(path.name.split("_")[0] for path in dependencies)
    kernel = forky_kernel(root)
    arming = arm(root)
    capture = root / "var/lib/kdump-build" / kernel
    images = (f"boot/vmlinuz-{kernel}", f"usr/lib/modules/{kernel}/vmlinuz")
    return Forky(
        deb_version=deb.name.split("_")[1],
        kernel_version=kernel,
        libraries=in_tree(root, "dpkg-query -W " + " ".join(LIBRARIES)),
        install=install,
        version=in_tree(root, "kdump-build --version"),
        help=in_tree(root, "kdump-build --help"),
        arming=arming,
        capture=sorted(os.listdir(capture)),
        kernel_images=[f"/{image}" for image in images if (root / image).is_file()],
        recorded_image=json.loads((capture / "host.json").read_text())["inputs"]["kernel_image"],
        hooks=in_tree(root, HOOKS, kernel),
        owners=in_tree(root, "dpkg -S " + " ".join(f"/{path}" for path in PACKAGED)),
        files_before=files_before,
        dependency_files=in_tree(root, f"dpkg -L {names} | sort -u"),
        purge=in_tree(root, "apt-get purge -y kdump-build 2>&1"),
        status=in_tree(root, "dpkg -s kdump-build 2>&1 || true"),
        files_after=in_tree(root, files + "files"),
    )


@pytest.fixture(scope="module")
def forky(tmp_path_factory: pytest.TempPathFactory) -> Forky:
    work = tmp_path_factory.mktemp("debian14")
    built = subprocess.run([str(REPO / "scripts/build-deb"), str(work / "deb")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (deb,) = (work / "deb").glob("kdump-build_*_all.deb")
    tree = trixie_tree.build_tree(SUITE)
    root = trixie_tree.extract(tree, work / "root")
    try:
        return run_scenario(root, deb, tree)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_apt_installs_the_deb_offline_with_debian_14s_own_libraries(forky: Forky) -> None:
    assert "Setting up kdump-build (" in forky.install, forky.install
    print(f"Debian 14's packages: {forky.libraries}")
    installed = dict(line.split("\t") for line in forky.libraries.splitlines())
    assert set(installed) == set(LIBRARIES) and all(installed.values()), installed


def test_the_trees_kdump_build_runs_on_debian_14s_python(forky: Forky) -> None:
    assert forky.version.split() == ["kdump-build", forky.deb_version], forky.version
    for command in ("enable", "kernel-installed", "kernel-removed", "dumps", "status"):
        assert re.search(rf"^\s+{command}\s", forky.help, re.MULTILINE), forky.help


def test_enable_root_builds_a_capture_for_debian_14s_split_kernel(forky: Forky) -> None:
    kernel = forky.kernel_version
    assert re.search(rf"capture: \S+/var/lib/kdump-build/{re.escape(kernel)} \(needs",
                     forky.arming), forky.arming  # fmt: skip
    assert "at its first boot the service loads the capture" in forky.arming
    assert {"vmlinuz", "initrd.img", "cmdline.txt"} <= set(forky.capture), forky.capture
    # The kernel package's image is in /usr/lib/modules/VERSION/; its postinst filled /boot
    # too (a hard link), which the capture's record names, as the booted system will see it.
    assert forky.kernel_images == [f"/boot/vmlinuz-{kernel}", f"/usr/lib/modules/{kernel}/vmlinuz"]
    assert forky.recorded_image == f"/boot/vmlinuz-{kernel}"


def test_the_kernel_hooks_rebuild_the_capture_on_debian_14s_libraries(forky: Forky) -> None:
    """The tree's kdump-build (forky's zstandard, libarchive-c, lz4) builds the same
    capture, byte for byte, as the host's (Debian 12's, pip's) from the same recipe."""
    kernel = forky.kernel_version
    assert f"kdump-build: removed /var/lib/kdump-build/{kernel}" in forky.hooks, forky.hooks
    assert f"kdump-build: built /var/lib/kdump-build/{kernel} for kernel {kernel}" in forky.hooks
    host, tree = forky.hooks.split("\n---\n")
    host_sums = [line for line in host.splitlines() if re.match(r"[0-9a-f]{64}  /", line)]
    assert len(host_sums) == 3 and host_sums == tree.strip().splitlines(), forky.hooks


def test_dpkg_names_the_packages_files(forky: Forky) -> None:
    owners = sorted(line for line in forky.owners.splitlines() if line)
    assert owners == sorted(f"kdump-build: /{path}" for path in PACKAGED), forky.owners


def test_purge_leaves_nothing_of_ours_and_no_warning(forky: Forky) -> None:
    assert "Purging configuration files for kdump-build" in forky.purge, forky.purge
    # The unit under /lib made dpkg try to remove the aliased /lib/systemd/system.
    assert "dpkg: warning" not in forky.purge, forky.purge
    assert "is not installed" in forky.status
    dependencies = set(forky.dependency_files.splitlines())
    assert gained_files(forky.files_before, forky.files_after, dependencies) == []
    assert sorted(set(forky.files_before.splitlines()) - set(forky.files_after.splitlines())) == []
