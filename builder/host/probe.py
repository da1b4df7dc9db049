"""Facts about this machine that `enable` plans from, read once.

The installed kernels (an image in /boot with its modules), the RAM and CPUs,
the programs the capture copies, and the filesystem that holds /var/crash.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import HostError, KdumpBuildError
from builder.host.paths import HostPaths
from builder.host.storage import (
    BlockStack,
    block_stack,
    mount_device_number,
    require_single_device_btrfs,
    subvolume_path,
)
from builder.host.unsupported import refuse_unsupported
from builder.kexec.memmap import parse_iomem

# Filesystems the capture kernel mounts from a block device with only its module.
MOUNTABLE = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs"})
# The Debian package that ships each program the capture needs.
PROGRAMS = {
    "makedumpfile": (("/usr/bin/makedumpfile", "/usr/sbin/makedumpfile"), "makedumpfile"),
    "busybox": (("/bin/busybox", "/usr/bin/busybox"), "busybox-static"),
}


@dataclass(frozen=True)
class DumpFilesystem:
    """The filesystem that holds the crash directory, as the capture will find it."""

    device: str  # UUID=...
    fstype: str
    mount_point: Path  # where the running system has it
    path: str  # the crash directory inside that filesystem (its subvolume's, on btrfs)
    # The md arrays and the LV the capture assembles before it mounts.
    stack: BlockStack = field(default_factory=BlockStack)
    subvolume: str = ""  # btrfs: the subvolume mounted, from the top level


@dataclass(frozen=True)
class HostFacts:
    kernels: tuple[str, ...]
    ram: int
    cpus: int
    makedumpfile: str
    busybox: str
    # None when enable was asked for a network target alone: /var/crash's filesystem
    # does not matter then, and a kind the capture cannot mount (LUKS) must not refuse.
    dump_filesystem: DumpFilesystem | None
    consoles: tuple[str, ...]


def installed_kernels(paths: HostPaths) -> tuple[str, ...]:
    """Versions with an image and /lib/modules/<version>, sorted.

    The image is /boot/vmlinuz-<version>, or Debian 14's
    /lib/modules/<version>/vmlinuz where installation has not copied it to /boot.
    """
    found = set()
    for image in paths.boot.glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if (paths.modules / version).is_dir():
            found.add(version)
    found.update(image.parent.name for image in paths.modules.glob("*/vmlinuz"))
    return tuple(sorted(found))


def find_program(paths: HostPaths, name: str) -> str:
    """The program's path in the host root, or a `HostError` naming the package to install."""
    candidates, package = PROGRAMS[name]
    for candidate in candidates:
        if (paths.root / candidate.lstrip("/")).is_file():
            return candidate
    raise HostError(
        f"{name} is not installed: the capture needs it (install it: apt install {package})"
    )


def machine_ram(iomem: Path = Path("/proc/iomem"), meminfo: Path = Path("/proc/meminfo")) -> int:
    """This machine's RAM as crashkernel= ranges see it: its System RAM (else MemTotal)."""
    try:
        total = parse_iomem(iomem.read_text(), source=str(iomem)).total_ram
    except (OSError, KdumpBuildError):
        total = 0
    if total > 0:
        return total
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise HostError(f"{meminfo}: no MemTotal line")


def console_arguments(cmdline: str) -> tuple[str, ...]:
    """The running kernel's console= arguments, for the capture to log where it does.

    >>> console_arguments("BOOT_IMAGE=/vmlinuz root=UUID=x ro console=ttyS0,115200 quiet")
    ('console=ttyS0,115200',)
    """
    return tuple(word for word in cmdline.split() if word.startswith("console="))


@dataclass(frozen=True)
class Mount:
    device_number: str  # major:minor
    root: str  # the directory of the filesystem mounted here (bind mounts)
    mount_point: str
    fstype: str
    source: str
    options: str = ""  # the filesystem's own options (btrfs: subvol=...)


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/self/mountinfo lines (proc(5)); octal escapes in paths decoded.

    >>> parse_mountinfo("26 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\\n")[0].fstype
    'ext4'
    """
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        options = tail[2] if len(tail) > 2 else ""
        mounts.append(
            Mount(
                fields[2],
                unescape_path(fields[3]),
                unescape_path(fields[4]),
                tail[0],
                tail[1],
                options,
            )
        )
    return mounts


# The kernel writes a space, tab, line break and backslash of a path as `\ooo` (octal).
_OCTAL_ESCAPE = re.compile(rb"\\([0-3][0-7]{2})")


def unescape_path(text: str) -> str:
    r"""A path field with its octal escapes turned back into the bytes they stand for.

    The path is bytes, not text: the escapes are decoded as bytes, then the whole
    path is decoded the way Python decodes file names (undecodable bytes kept).

    >>> unescape_path(r"/mnt/my\040disk\134x")
    '/mnt/my disk\\x'
    """
    if "\\" not in text:
        return text
    raw = _OCTAL_ESCAPE.sub(lambda match: bytes([int(match[1], 8)]), os.fsencode(text))
    return os.fsdecode(raw)


def _read_mountinfo() -> str:
    # Paths are bytes: decoded as file names are, so no name stops the probe.
    return os.fsdecode(Path("/proc/self/mountinfo").read_bytes())


def _existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (the capture creates the rest)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_of(path: Path, mounts: list[Mount]) -> Mount:
    """The mount that holds `path` (or would, once created): the longest mount point
    above it on its device."""
    path = _existing(path)
    status = os.stat(path)
    number = f"{os.major(status.st_dev)}:{os.minor(status.st_dev)}"
    real = os.path.realpath(path)
    holding = [
        mount
        for mount in mounts
        if mount.device_number == number
        and (real == mount.mount_point or real.startswith(mount.mount_point.rstrip("/") + "/"))
    ]
    if not holding:
        raise HostError(f"{path}: no mount in /proc/self/mountinfo holds it")
    return max(holding, key=lambda mount: len(mount.mount_point))


def uuid_of(device_number: str, by_uuid: Path = Path("/dev/disk/by-uuid")) -> str | None:
    """The filesystem UUID whose /dev/disk/by-uuid link leads to that block device."""
    major, minor = (int(part) for part in device_number.split(":"))
    if not by_uuid.is_dir():
        return None
    for link in sorted(by_uuid.iterdir()):
        try:
            status = os.stat(link)
        except OSError:
            continue
        if os.major(status.st_rdev) == major and os.minor(status.st_rdev) == minor:
            return link.name
    return None


def dump_filesystem(crash_dir: Path, mountinfo: str, by_uuid: Path,
                    sysfs: Path = Path("/sys")) -> DumpFilesystem:  # fmt: skip
    """The filesystem holding `crash_dir`, or a `HostError` saying why the capture cannot
    mount it (not a block device filesystem, a stack it cannot assemble, no UUID)."""
    mount = mount_of(crash_dir, parse_mountinfo(mountinfo))
    where = f"{crash_dir} is on {mount.source} ({mount.fstype}, mounted at {mount.mount_point})"
    if mount.fstype not in MOUNTABLE:
        kinds = ", ".join(sorted(MOUNTABLE))
        raise HostError(f"{where}: the capture can only mount {kinds}; give a recipe with "
                        "another dump target (kdump-build enable RECIPE)")  # fmt: skip
    number = mount_device_number(mount.source, mount.device_number)
    refuse_unsupported(number, where, sysfs)  # dm-crypt, multipath, iSCSI, ...
    uuid = uuid_of(number, by_uuid)
    try:
        stack = block_stack(number, sysfs, by_uuid.parent / "by-id")
        if mount.fstype == "btrfs" and uuid is not None:
            require_single_device_btrfs(uuid, sysfs)
    except HostError as error:
        raise HostError(f"{where}: {error}") from None
    if uuid is None:
        raise HostError(f"{where}: it has no UUID in {by_uuid}, so the capture cannot find it")
    relative = os.path.relpath(os.path.realpath(crash_dir), mount.mount_point)
    inside = os.path.normpath(os.path.join(mount.root, relative))
    subvolume = ""
    if mount.fstype == "btrfs":
        subvolume, inside = subvolume_path(mount.options, inside)
    return DumpFilesystem(f"UUID={uuid}", mount.fstype, Path(mount.mount_point), inside, stack,
                          subvolume)  # fmt: skip


def probe_host(paths: HostPaths, local: bool = True) -> HostFacts:
    """Everything `enable` needs to know about this machine (as root, with /proc and /sys);
    `local`: whether the dumps may go to the filesystem of /var/crash."""
    kernels = installed_kernels(paths)
    if not kernels:
        raise HostError(
            f"{paths.boot}: no kernel image (vmlinuz-*) with modules in {paths.modules}"
        )
    makedumpfile = find_program(paths, "makedumpfile")
    busybox = find_program(paths, "busybox")
    filesystem = (dump_filesystem(paths.crash, _read_mountinfo(), Path("/dev/disk/by-uuid"))
                  if local else None)  # fmt: skip
    consoles = console_arguments(Path("/proc/cmdline").read_text())
    cpus = os.cpu_count() or 1
    return HostFacts(kernels, machine_ram(), cpus, makedumpfile, busybox, filesystem, consoles)


def mounted_directory(
    device: str, path: str, by_uuid: Path = Path("/dev/disk/by-uuid")
) -> Path | None:
    """Where this machine has `path` of the filesystem `device` (UUID=...), if mounted."""
    if not device.startswith("UUID="):
        return None
    link = by_uuid / device.removeprefix("UUID=").lower()
    try:
        status = os.stat(link)
    except OSError:
        return None
    number = f"{os.major(status.st_rdev)}:{os.minor(status.st_rdev)}"
    mounts = [mount for mount in parse_mountinfo(_read_mountinfo())
              if mount.device_number == number]  # fmt: skip
    for mount in mounts:
        inside = os.path.relpath(os.path.normpath(path), mount.root)
        if not inside.startswith(".."):
            return Path(os.path.normpath(os.path.join(mount.mount_point, inside)))
    return None
