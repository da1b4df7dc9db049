"""What `enable --root DIR` knows about an unbooted root tree, read from its files only.

A tree made by mmdebstrap, debootstrap or an image pipeline has never run: no /proc,
no /sys, no mounts. Everything comes from files under DIR (its fstab, its GRUB
defaults, its dpkg database), never from the build host that arms it, and no path
is read or written through a symlink that leads out of DIR.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from builder.arch import Arch, arch_info
from builder.errors import HostError, KdumpBuildError
from builder.host.paths import HostPaths
from builder.host.probe import (
    MOUNTABLE,
    PROGRAMS,
    DumpFilesystem,
    console_arguments,
    unescape_path,
)

CRASH_DIR = "/var/crash"
# The dump filesystem's disk is not known before the tree boots somewhere: the
# capture carries the usual disk drivers of a virtual or physical machine.
DISK_DRIVERS = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "ahci", "nvme")
# How the capture finds the dump filesystem without this machine's /dev.
STABLE_DEVICE_KINDS = ("UUID=", "LABEL=")
_GRUB_CMDLINE = re.compile(r"^\s*GRUB_CMDLINE_LINUX(?:_DEFAULT)?=(.*)$", re.MULTILINE)


def confined(root: Path, path: Path) -> Path:
    """`path`, refused when a symlink on its way leads out of `root`.

    >>> confined(Path("/usr"), Path("/usr/bin"))
    PosixPath('/usr/bin')
    >>> confined(Path("/usr"), Path("/usr/../etc"))
    Traceback (most recent call last):
    builder.errors.HostError: /usr/../etc: leads out of /usr (to /etc); ...
    """
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise HostError(f"{path}: leads out of {root} (to {real}); enable --root reads and "
                        "writes only inside the tree")  # fmt: skip
    return path


def check_tree(root: Path) -> None:
    """A `HostError` unless `root` is a root filesystem tree other than this machine's."""
    if not root.is_dir():
        raise HostError(f"{root}: {'not a directory' if root.exists() else 'no such directory'}")
    if Path(os.path.realpath(root)) == Path("/"):
        raise HostError(f"{root}: is this machine's own root; --root arms a tree that is "
                        "not running (to arm this machine, run kdump-build enable without "
                        "--root)")  # fmt: skip
    release = confined(root, root / "etc/os-release")
    if not release.is_file() and not confined(root, root / "usr/lib/os-release").is_file():
        raise HostError(f"{root}: not a root filesystem tree (no etc/os-release)")


def tree_arch(root: Path) -> Arch:
    """The tree's architecture: that of its dpkg (cross arming is a use case)."""
    status = confined(root, root / "var/lib/dpkg/status")
    try:
        text = status.read_text(errors="replace")
    except OSError as error:
        raise HostError(f"{status}: cannot read it ({error.strerror}); enable --root arms "
                        "Debian trees") from None  # fmt: skip
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): *(.*)$", stanza, re.MULTILINE))
        if fields.get("Package") == "dpkg":
            try:
                return arch_info(fields.get("Architecture", "")).arch
            except KdumpBuildError:
                raise HostError(f"{status}: dpkg's Architecture "
                                f"{fields.get('Architecture')!r} is not one kdump-build "
                                "builds for") from None  # fmt: skip
    raise HostError(f"{status}: dpkg is not installed in it, so its architecture is unknown")


def tree_program(paths: HostPaths, name: str) -> str:
    """The program's path as the booted tree will see it."""
    candidates, package = PROGRAMS[name]
    for candidate in candidates:
        if confined(paths.root, paths.root / candidate.lstrip("/")).is_file():
            return candidate
    raise HostError(f"{paths.root}: {name} is not installed in it: the capture needs it "
                    f"(add the package {package} to the tree)")  # fmt: skip


def fstab_entries(fstab: Path) -> list[tuple[str, str, str, str]]:
    """(device, mount point, fstype, options) of each fstab(5) line.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w") as f:
    ...     _ = f.write("# c\\nUUID=ab / ext4 defaults 0 1\\n\\nLABEL=x /var btrfs subvol=@v\\n")
    ...     f.flush()
    ...     fstab_entries(Path(f.name))
    [('UUID=ab', '/', 'ext4', 'defaults'), ('LABEL=x', '/var', 'btrfs', 'subvol=@v')]
    """
    try:
        text = fstab.read_text(errors="replace")
    except OSError as error:
        raise HostError(f"{fstab}: cannot read it ({error.strerror}); the dump filesystem "
                        f"is the one that holds {CRASH_DIR}") from None  # fmt: skip
    entries = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and not words[0].startswith("#"):
            options = words[3] if len(words) > 3 else "defaults"
            entries.append((words[0], unescape_path(words[1]), words[2], options))
    return entries


def tree_dump_filesystem(root: Path) -> DumpFilesystem:
    """The filesystem the booted tree will hold /var/crash on, from its etc/fstab."""
    fstab = confined(root, root / "etc/fstab")
    holding = [(device, point, fstype, options)
               for device, point, fstype, options in fstab_entries(fstab)
               if point == CRASH_DIR or CRASH_DIR.startswith(point.rstrip("/") + "/")]  # fmt: skip
    if not holding:
        raise HostError(f"{fstab}: no line mounts {CRASH_DIR} or a directory above it")
    device, point, fstype, options = max(holding, key=lambda entry: len(entry[1]))
    where = f"{fstab}: {device} on {point}"
    if fstype not in MOUNTABLE:
        raise HostError(f"{where}: {fstype}: the capture can only mount "
                        f"{', '.join(sorted(MOUNTABLE))}")  # fmt: skip
    refuse_stacked(where, device)
    refuse_md_arrays(root, where)
    if not device.startswith(STABLE_DEVICE_KINDS):
        raise HostError(f"{where}: name it by UUID= or LABEL= (a tree has no /dev to read "
                        "another name from)")  # fmt: skip
    inside = os.path.normpath("/" + os.path.relpath(CRASH_DIR, point))
    if fstype != "btrfs":
        return DumpFilesystem(device, fstype, Path(point), inside)
    if any(option.startswith("subvolid=") for option in options.split(",")):
        raise HostError(f"{where}: subvolid=: name the subvolume by subvol=PATH (the "
                        "capture mounts it by path)")  # fmt: skip
    # The booted tree mounts the subvolume at `point`: the capture mounts the same one.
    named = [option.removeprefix("subvol=") for option in options.split(",")
             if option.startswith("subvol=")]  # fmt: skip
    subvolume = "/" + named[-1].strip("/") if named else ""
    return DumpFilesystem(device, fstype, Path(point), inside, subvolume=subvolume)


def refuse_stacked(where: str, device: str) -> None:
    """A tree's fstab naming a device-mapper device or an md array: the stack beneath it
    (LVM, LUKS, md members) is on disks the tree has never seen."""
    if device.startswith(("/dev/mapper/", "/dev/dm-")):
        kind = "a device-mapper device (LVM, LUKS or multipath)"
    elif re.fullmatch(r"/dev/md(\d+|/.+)", device):
        kind = "an md array"
    else:
        return
    raise HostError(f"{where}: {kind}: enable --root cannot see the stack beneath it in a "
                    "tree; arm the booted machine with kdump-build enable")  # fmt: skip


def refuse_md_arrays(root: Path, where: str) -> None:
    """A `UUID=` may name a filesystem on an md array the tree's mdadm.conf assembles, and
    nothing in a tree says which: refused rather than a capture that finds no disk."""
    conf = confined(root, root / "etc/mdadm/mdadm.conf")
    try:
        text = conf.read_text(errors="replace")
    except OSError:
        return
    if re.search(r"^ARRAY\s", text, re.MULTILINE):
        raise HostError(f"{where}: {conf} assembles md arrays, and a tree does not say "
                        "whether this filesystem is on one; arm the booted machine with "
                        "kdump-build enable")  # fmt: skip


def tree_consoles(root: Path) -> tuple[str, ...]:
    """The console= arguments the tree's GRUB defaults give its kernel."""
    defaults = confined(root, root / "etc/default/grub")
    try:
        text = defaults.read_text(errors="replace")
    except OSError:
        return ()
    words = " ".join(value.strip("\"'") for value in _GRUB_CMDLINE.findall(text))
    return console_arguments(words)
