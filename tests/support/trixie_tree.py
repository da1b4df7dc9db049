"""A Debian 13 root tree made with mmdebstrap, cached, for the armed-image VM test
(and the same tree of another release, `suite`: Debian 14's for the package test).

The tree is what an image pipeline has before its last steps: Debian 13's kernel,
systemd, GRUB for BIOS and Python, the test's runner (tests.support.debian_image's
RUNNER: the 9p share's boot.sh runs at every boot), and no kdump-build. Beside it,
Debian 13's own .debs of the package's dependencies (debian/control's Depends),
fetched by apt inside the tree when it was made, so the test installs the .deb
into the tree with apt with no network.

Cached as `<cache>/vm/<suite>-tree-<key>/` (base.tar, deps/, tree.json): the key
covers everything the tree is made from but the package versions apt picks.
Kept is Debian's generic initrd (MODULES=most, built by the kernel package in the
chroot): MODULES=dep would read the build host's disk, and the images pipelines
make carry the generic one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import debian_image
from tests.support.paths import REPO

TREE_VERSION = "1"
SUITE = "trixie"


def mirrors(suite: str) -> tuple[str, ...]:
    """The Debian 12 image's archive, security and updates suites, of `suite`."""
    return tuple(line.replace(debian_image.SUITE, suite) for line in debian_image.MIRRORS)


MIRRORS = mirrors(SUITE)
# Debian testing's Release files are valid for a week; the archive this machine reaches
# may serve an older one (apt: "Release file ... is expired"). apt still checks their
# signatures. A function of the suite, so the tree's key covers it.
EXPIRING_SUITES = ("forky",)


def apt_options(suite: str) -> tuple[str, ...]:
    if suite in EXPIRING_SUITES:
        return ('--aptopt=Acquire::Check-Valid-Until "false"',)
    return ()


PACKAGES = (
    "systemd-sysv", "udev", "kmod", "linux-image-amd64", "initramfs-tools", "zstd",
    "grub-pc", "busybox-static", "e2fsprogs", "procps", "python3", "passwd", "login",
)  # fmt: skip
# No disk to install GRUB on in a chroot: the test writes its boot sectors itself.
GRUB_SELECTIONS = (
    "grub-pc grub-pc/install_devices multiselect",
    "grub-pc grub-pc/install_devices_empty boolean true",
)
# Every file of a system, but for the kernel's, apt's and dpkg's own state and logs: the
# same list in the tree (by chroot) and in the booted system.
FILES_SHELL = r"""
files() {
    find / -xdev \( -path /proc -o -path /sys -o -path /run -o -path /dev -o -path /tmp \
        -o -path /var/tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/apt \
        -o -path /var/lib/dpkg -o -path /var/lib/systemd \) -prune -o -print | sort
}
"""


@dataclass(frozen=True)
class Tree:
    """The cached tree (a tar of it) and its dependencies' .debs."""

    tar: Path
    deps: Path


def package_dependencies() -> tuple[str, ...]:
    """The Debian packages debian/control's Depends names (substitution variables aside)."""
    control = (REPO / "debian/control").read_text()
    match = re.search(r"^Depends:(.*?)^\S", control.split("Package: kdump-build")[1],
                      re.MULTILINE | re.DOTALL)  # fmt: skip
    assert match, "debian/control: no Depends of kdump-build"
    words = (entry.strip().split()[0] for entry in match.group(1).split(",") if entry.strip())
    return tuple(sorted(word for word in words if not word.startswith("$")))


def tree_key(suite: str = SUITE) -> str:
    """A digest of everything the tree is made from (package versions excepted)."""
    text = json.dumps(
        [TREE_VERSION, suite, mirrors(suite), PACKAGES, package_dependencies(), _customize_hooks(),
         debian_image.GRUB_DEFAULT, debian_image.RUNNER, debian_image.RUNNER_UNIT],
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _customize_hooks() -> list[str]:
    """Shell run by mmdebstrap after the install, with the tree as $1 and $DEPS for the
    dependencies' .debs (the Debian 12 image's system settings, without its venv)."""
    chroot = 'chroot "$1"'
    image = debian_image
    return [
        'echo debvm > "$1/etc/hostname"',
        f'echo "UUID={image.ROOT_UUID} / ext4 errors=remount-ro 0 1" > "$1/etc/fstab"',
        f"{chroot} passwd -d root",
        f"{chroot} systemctl set-default multi-user.target",
        f"{chroot} systemctl mask {' '.join(image.MASK_UNITS)}",
        'printf "blacklist kvm_amd\\nblacklist kvm_intel\\nblacklist kvm\\n" '
        '> "$1/etc/modprobe.d/debvm.conf"',
        'mkdir -p "$1/etc/systemd/system/serial-getty@ttyS0.service.d"',
        f'cat > "$1/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" '
        f'<<"EOF"\n{image.AUTOLOGIN}EOF',
        f'cat > "$1/usr/local/sbin/debvm-runner" <<"EOF"\n{image.RUNNER}EOF',
        'chmod 755 "$1/usr/local/sbin/debvm-runner"',
        f'cat > "$1/etc/systemd/system/debvm-runner.service" <<"EOF"\n{image.RUNNER_UNIT}EOF',
        f"{chroot} systemctl enable debvm-runner.service",
        f'cat > "$1/etc/default/grub" <<"EOF"\n{image.GRUB_DEFAULT}EOF',
        *image._grub_hooks(),
        # The package's dependencies, downloaded (not installed) by the tree's own apt.
        'rm -f "$1"/var/cache/apt/archives/*.deb',
        f"{chroot} apt-get install --download-only -y --no-install-recommends "
        f"{' '.join(package_dependencies())}",
        'cp "$1"/var/cache/apt/archives/*.deb "$DEPS/"',
        'rm -f "$1"/var/cache/apt/archives/*.deb',
        'rm -rf "$1/tmp/"*',
    ]


def mmdebstrap(tar: Path, deps: Path, apt_cache: Path, suite: str = SUITE) -> None:
    apt_cache.mkdir(parents=True, exist_ok=True)
    deps.mkdir(parents=True, exist_ok=True)
    command = [
        "mmdebstrap", "--variant=apt", "--mode=root", "--format=tar", "--quiet",
        f"--include={','.join(PACKAGES)}", *debian_image.TRIMMED_TREE_OPTIONS,
        *apt_options(suite),
        *(f'--essential-hook=echo "{line}" | chroot "$1" debconf-set-selections'
          for line in GRUB_SELECTIONS),
        "--skip=download/empty", '--setup-hook=mkdir -p "$1/var/cache/apt/archives"',
        f"--setup-hook=sync-in {apt_cache} /var/cache/apt/archives",
        f"--customize-hook=sync-out /var/cache/apt/archives {apt_cache}",
        *(f"--customize-hook={hook}" for hook in _customize_hooks()),
        suite, str(tar), *mirrors(suite),
    ]  # fmt: skip
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("PIP_")}  # fmt: skip
    subprocess.run(command, check=True, env=dict(environment, DEPS=str(deps)))


def build_tree(suite: str = SUITE) -> Tree:
    """The cached tree of `suite`, made first when missing (minutes: mmdebstrap)."""
    directory = debian_image.vm_cache() / f"{suite}-tree-{tree_key(suite)}"
    tree = Tree(directory / "base.tar", directory / "deps")
    record = directory / "tree.json"
    if tree.tar.exists() and record.exists():
        record.touch()
        return tree
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build-", dir=directory) as temporary:
        work = Path(temporary)
        mmdebstrap(work / "base.tar", work / "deps", debian_image.downloads() / f"apt-{suite}",
                   suite)  # fmt: skip
        shutil.rmtree(tree.deps, ignore_errors=True)
        os.replace(work / "deps", tree.deps)
        os.replace(work / "base.tar", tree.tar)
    record.write_text(json.dumps({"seconds": round(time.monotonic() - start, 1)}) + "\n")
    _drop_other_trees(directory, suite)
    return tree


def _drop_other_trees(keep: Path, suite: str) -> None:
    """Trees of other keys that no run used lately (other checkouts may still use theirs)."""
    for entry in keep.parent.glob(f"{suite}-tree-*"):
        record = entry / "tree.json"
        if (
            entry != keep
            and record.is_file()
            and (time.time() - record.stat().st_mtime > debian_image.STALE_AFTER_SECONDS)
        ):
            shutil.rmtree(entry, ignore_errors=True)


def extract(tree: Tree, root: Path) -> Path:
    """A fresh copy of the tree at `root` (owners, modes and xattrs kept)."""
    root.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "--xattrs",
                    "--xattrs-include=*", "-xpf", str(tree.tar)], check=True)  # fmt: skip
    return root


def chroot(root: Path, script: str, *, network: bool = True) -> str:
    """`script` run by the tree's own sh in a chroot (`network=False`: in a network
    namespace of its own, with no interface up: nothing can reach the archive)."""
    command = ["chroot", str(root), "sh", "-ec", script]
    if not network:
        command = ["unshare", "--net", *command]
    return run_in_tree(command, script).stdout


def run_in_tree(command: list[str], script: str) -> subprocess.CompletedProcess[str]:
    """`command`, a chroot into a tree running `script`, with the tree's own PATH and a
    neutral locale; the test fails, showing the output's ends, when the script does."""
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            env=environment)  # fmt: skip
    assert result.returncode == 0, (script, result.stdout[-3000:], result.stderr[-3000:])
    return result


def install_offline(root: Path, debs: list[Path]) -> str:
    """apt-get install of the .debs in the tree, with no network; apt's output."""
    inbox = root / "tmp/debs"
    inbox.mkdir(parents=True)
    for deb in debs:
        shutil.copy(deb, inbox / deb.name)
    try:
        return chroot(root, "DEBIAN_FRONTEND=noninteractive apt-get install -y "
                      "--no-install-recommends /tmp/debs/*.deb", network=False)  # fmt: skip
    finally:
        shutil.rmtree(inbox)


def kernel_command_line(root: Path) -> str:
    """The kernel arguments grub-mkconfig would write: GRUB_CMDLINE_LINUX, then
    GRUB_CMDLINE_LINUX_DEFAULT, after sourcing etc/default/grub and each
    etc/default/grub.d/*.cfg in turn, as grub-mkconfig does."""
    script = r"""
        . "$1/etc/default/grub"
        for drop_in in "$1"/etc/default/grub.d/*.cfg; do
            if [ -e "$drop_in" ]; then . "$drop_in"; fi
        done
        printf '%s %s' "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"
    """
    result = subprocess.run(["sh", "-ec", script, "sh", str(root)], capture_output=True,
                            text=True, check=True)  # fmt: skip
    return " ".join(result.stdout.split())


def grub_cfg(root: Path, kernel_version: str) -> str:
    """The tree's grub.cfg: its one kernel, with the command line its GRUB defaults give."""
    return debian_image.grub_cfg("Debian GNU/Linux", kernel_version, kernel_command_line(root))
