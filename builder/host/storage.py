"""The block stack beneath /var/crash, read from sysfs: what the capture must assemble.

A dump filesystem on a partition or disk needs nothing; on an LVM logical volume
the capture activates that one volume (by its LV UUID, from the device-mapper
UUID in /sys/block/dm-N/dm/uuid); on md arrays, below the volume or directly,
it assembles each array (by its UUID, from udev's /dev/disk/by-id/md-uuid-* link).
Everything else that device-mapper or md builds is refused in one line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import HostError

# A device-mapper UUID lvm2 gives a logical volume: the prefix, then the VG's and
# the LV's UUIDs without dashes (32 characters each); a layer of a complex LV (thin
# pool, RAID image, snapshot origin) carries a `-<layer>` suffix after them.
LVM_PREFIX = "LVM-"
LVM_ID_LENGTH = 32
# How lvm2 prints a UUID: its 32 characters in groups of 6-4-4-4-4-4-6.
LVM_UUID_GROUPS = (6, 4, 4, 4, 4, 4, 6)
MD_UUID_LINK = "md-uuid-"


@dataclass(frozen=True)
class BlockStack:
    """What the capture assembles before it mounts: md arrays (in order) and one LV."""

    md_arrays: tuple[str, ...] = ()
    lvm_volume: str = ""  # LV UUID as lvm2 prints it


def lvm_uuid(compact: str) -> str:
    """A UUID of lvm2's as it prints it.

    >>> lvm_uuid("abcdef0123456789ABCDEFGHIJKLMN!#")
    'abcdef-0123-4567-89AB-CDEF-GHIJ-KLMN!#'
    """
    groups, start = [], 0
    for length in LVM_UUID_GROUPS:
        groups.append(compact[start : start + length])
        start += length
    return "-".join(groups)


@dataclass
class _Walk:
    sysfs: Path
    by_id: Path
    md_arrays: list[str] = field(default_factory=list)
    lvm_volume: str = ""


def block_stack(device_number: str, sysfs: Path = Path("/sys"),
                by_id: Path = Path("/dev/disk/by-id")) -> BlockStack:  # fmt: skip
    """The stack under the block device `device_number` (major:minor), or a `HostError`
    naming what the capture cannot assemble."""
    link = sysfs / "dev" / "block" / device_number
    if not link.exists():
        # Not a block device sysfs knows (a test tree, a network or virtual filesystem):
        # nothing beneath it to assemble; finding it by UUID is checked apart.
        return BlockStack()
    walk = _Walk(sysfs, by_id)
    _visit(walk, Path(os.path.realpath(link)).name, top=True)
    return BlockStack(tuple(walk.md_arrays), walk.lvm_volume)


def _slaves(walk: _Walk, name: str) -> list[str]:
    slaves = walk.sysfs / "class" / "block" / name / "slaves"
    return sorted(entry.name for entry in slaves.iterdir()) if slaves.is_dir() else []


def _visit(walk: _Walk, name: str, *, top: bool) -> None:
    if (walk.sysfs / "class" / "block" / name / "dm").is_dir():
        _visit_dm(walk, name, top=top)
    elif (walk.sysfs / "class" / "block" / name / "md").is_dir():
        _visit_md(walk, name)
    # A disk or a partition: the capture finds the filesystem on it by UUID.


def _visit_dm(walk: _Walk, name: str, *, top: bool) -> None:
    dm = walk.sysfs / "class" / "block" / name / "dm"
    uuid = _read(dm / "uuid")
    label = f"{name} ({_read(dm / 'name') or 'unnamed'})"
    rest = uuid.removeprefix(LVM_PREFIX)
    if not uuid.startswith(LVM_PREFIX):
        kind = uuid.split("-", 1)[0] if "-" in uuid else "no UUID"
        raise HostError(f"device-mapper device {label} is {kind}, not an LVM logical volume: "
                        "the capture assembles only LVM and md; give a recipe with another "
                        "dump target")  # fmt: skip
    if not top or len(rest) != 2 * LVM_ID_LENGTH:
        raise HostError(f"LVM device {label} is a layer of a thin, RAID, cache or snapshot "
                        "volume or stacked on another: the capture activates only linear and "
                        "striped logical volumes on disks, partitions or md arrays")  # fmt: skip
    walk.lvm_volume = lvm_uuid(rest[LVM_ID_LENGTH:])
    for slave in _slaves(walk, name):
        _visit(walk, slave, top=False)


def _visit_md(walk: _Walk, name: str) -> None:
    uuid = _md_uuid(walk, name)
    if uuid is None:
        raise HostError(f"md array {name} has no {walk.by_id}/{MD_UUID_LINK}* link, so its UUID "
                        "is unknown (is udev running?)")  # fmt: skip
    for slave in _slaves(walk, name):
        if (walk.sysfs / "class" / "block" / slave / "dm").is_dir() or (
            walk.sysfs / "class" / "block" / slave / "md"
        ).is_dir():
            raise HostError(f"md array {name} is built on {slave}: the capture assembles md "
                            "arrays only from disks and partitions")  # fmt: skip
    if uuid not in walk.md_arrays:
        walk.md_arrays.append(uuid)


def _md_uuid(walk: _Walk, name: str) -> str | None:
    """The array's UUID from udev's by-id link to it."""
    if not walk.by_id.is_dir():
        return None
    for link in sorted(walk.by_id.glob(f"{MD_UUID_LINK}*")):
        if Path(os.path.realpath(link)).name == name:
            return link.name.removeprefix(MD_UUID_LINK)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def mount_device_number(source: str, device_number: str) -> str:
    """The block device a mount reads (major:minor): its source's, when that is a block
    device (btrfs reports an anonymous device number in mountinfo), else mountinfo's."""
    try:
        status = os.stat(source)
    except (OSError, ValueError):
        return device_number
    if not stat.S_ISBLK(status.st_mode):
        return device_number
    return f"{os.major(status.st_rdev)}:{os.minor(status.st_rdev)}"


def subvolume_path(options: str, inside: str) -> tuple[str, str]:
    """A btrfs mount's subvolume (its `subvol=` option) and `inside` (a path from the top
    level) made relative to that subvolume.

    >>> subvolume_path("rw,relatime,space_cache=v2,subvolid=257,subvol=/@crash", "/@crash/d")
    ('/@crash', '/d')
    >>> subvolume_path("rw,subvolid=5,subvol=/", "/var/crash")
    ('/', '/var/crash')
    """
    subvolume = "/"
    for option in options.split(","):
        if option.startswith("subvol="):
            subvolume = option.removeprefix("subvol=") or "/"
    relative = os.path.relpath(inside, subvolume)
    if relative.startswith(".."):
        raise HostError(f"{inside} is not inside the mounted subvolume {subvolume}")
    return subvolume, os.path.normpath(os.path.join("/", relative))


def require_single_device_btrfs(uuid: str, sysfs: Path = Path("/sys")) -> None:
    """A `HostError` when the btrfs filesystem `uuid` spans several devices: the capture
    runs no `btrfs device scan`, so the kernel would not find its other devices."""
    devices = sysfs / "fs" / "btrfs" / uuid / "devices"
    names = sorted(entry.name for entry in devices.iterdir()) if devices.is_dir() else []
    if len(names) > 1:
        raise HostError(f"btrfs {uuid} spans {len(names)} devices ({', '.join(names)}): the "
                        "capture mounts btrfs on one device only")  # fmt: skip


def btrfs_of_device(name: str, sysfs: Path = Path("/sys")) -> str | None:
    """The UUID of the mounted btrfs filesystem the block device `name` belongs to, if any
    (the kernel lists each one's devices in /sys/fs/btrfs/UUID/devices/)."""
    filesystems = sysfs / "fs" / "btrfs"
    found = sorted(filesystems.glob(f"*/devices/{name}")) if filesystems.is_dir() else []
    return found[0].parent.parent.name if found else None
