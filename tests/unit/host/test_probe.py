"""Facts about the machine: mounts, the dump filesystem, the programs the capture needs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.paths import HostPaths
from builder.host.probe import (
    dump_filesystem,
    find_program,
    installed_kernels,
    machine_ram,
    parse_mountinfo,
)

UUID = "6b1f0a2e-5d7c-4c1e-9a53-2f0de1c0ffee"


def mountinfo_for(directory: Path, fstype: str, source: str, root: str = "/") -> str:
    device = os.stat(directory).st_dev
    number = f"{os.major(device)}:{os.minor(device)}"
    return f"26 1 {number} {root} {directory} rw,relatime shared:1 - {fstype} {source} rw\n"


def by_uuid_dir(tmp_path: Path, directory: Path) -> Path:
    """A /dev/disk/by-uuid with one link to a block device node of `directory`'s device."""
    by_uuid = tmp_path / "by-uuid"
    by_uuid.mkdir()
    node = tmp_path / "vda1"
    os.mknod(node, stat.S_IFBLK | 0o600, os.stat(directory).st_dev)
    (by_uuid / UUID).symlink_to(node)
    return by_uuid


def test_the_dump_filesystem_is_found_by_uuid(tmp_path: Path) -> None:
    crash = tmp_path / "var" / "crash"
    crash.mkdir(parents=True)
    info = mountinfo_for(tmp_path, "ext4", "/dev/vda1")
    found = dump_filesystem(crash, info, by_uuid_dir(tmp_path, tmp_path))
    assert found.device == f"UUID={UUID}" and found.fstype == "ext4"
    assert found.path == "/var/crash" and found.mount_point == tmp_path


def test_a_bind_mount_names_the_path_inside_the_filesystem(tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()
    info = mountinfo_for(tmp_path, "xfs", "/dev/vda1", root="/srv/data")
    found = dump_filesystem(crash, info, by_uuid_dir(tmp_path, tmp_path))
    assert found.path == "/srv/data/crash"


@pytest.mark.parametrize(
    ("fstype", "source", "message"),
    [
        ("tmpfs", "tmpfs", "the capture can only mount btrfs, ext2, ext3, ext4, xfs"),
    ],
)
def test_what_the_capture_cannot_mount_is_refused(
    tmp_path: Path, fstype: str, source: str, message: str
) -> None:
    info = mountinfo_for(tmp_path, fstype, source)
    with pytest.raises(HostError, match=message):
        dump_filesystem(tmp_path, info, by_uuid_dir(tmp_path, tmp_path))


def test_no_uuid_is_refused(tmp_path: Path) -> None:
    info = mountinfo_for(tmp_path, "ext4", "/dev/vda1")
    with pytest.raises(HostError, match="has no UUID"):
        dump_filesystem(tmp_path, info, tmp_path / "no-by-uuid")


def test_missing_programs_name_the_package(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    with pytest.raises(HostError, match=r"apt install makedumpfile\)$"):
        find_program(paths, "makedumpfile")
    with pytest.raises(HostError, match=r"apt install busybox-static\)$"):
        find_program(paths, "busybox")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/busybox").write_bytes(b"")
    assert find_program(paths, "busybox") == "/usr/bin/busybox"


def test_kernels_need_their_modules(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-old"):
        (tmp_path / "boot" / f"vmlinuz-{version}").write_bytes(b"")
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (tmp_path / "lib/modules" / version).mkdir(parents=True)
    assert installed_kernels(HostPaths(tmp_path)) == ("6.1.0-10-amd64", "6.1.0-9-amd64")


def test_a_debian14_tree_before_boot_is_filled(tmp_path: Path) -> None:
    """A merged-/usr tree with the split package unpacked: the image is in its modules dir."""
    (tmp_path / "boot").mkdir()
    (tmp_path / "usr/lib/modules/7.2.12+deb14-amd64").mkdir(parents=True)
    (tmp_path / "usr/lib/modules/7.2.12+deb14-amd64/vmlinuz").write_bytes(b"")
    (tmp_path / "lib").symlink_to("usr/lib")
    paths = HostPaths(tmp_path)
    assert installed_kernels(paths) == ("7.2.12+deb14-amd64",)
    image = paths.kernel_image("7.2.12+deb14-amd64")
    assert image == tmp_path / "lib/modules/7.2.12+deb14-amd64/vmlinuz"
    # Once installation copied it to /boot, that one is the kernel.
    (tmp_path / "boot/vmlinuz-7.2.12+deb14-amd64").write_bytes(b"")
    assert paths.kernel_image("7.2.12+deb14-amd64").parent == tmp_path / "boot"


def test_ram_from_iomem_else_meminfo(tmp_path: Path) -> None:
    iomem = tmp_path / "iomem"
    iomem.write_text("00001000-0009ffff : System RAM\n00100000-7ffdffff : System RAM\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2000000 kB\n")
    assert machine_ram(iomem, meminfo) == 0x9F000 + 0x7FEE0000
    iomem.write_text("00000000-00000000 : System RAM\n")
    assert machine_ram(iomem, meminfo) == 2000000 * 1024


def test_mountinfo_unescapes_paths() -> None:
    (mount,) = parse_mountinfo("30 1 8:1 / /mnt/my\\040disk rw - ext4 /dev/sda1 rw\n")
    assert mount.mount_point == "/mnt/my disk"


def test_mountinfo_octal_escapes_are_bytes() -> None:
    """Issue 24: the escapes are bytes of the path; a UTF-8 name around them stays whole,
    and a line break in a mount point is decoded, not left as text."""
    line = "30 1 8:1 / /mnt/caf\xe9\\040d\\012x\\134 rw - ext4 /dev/sda1 rw\n"
    (mount,) = parse_mountinfo(line)
    assert mount.mount_point == "/mnt/caf\xe9 d\nx\\"
    raw = os.fsdecode(b"30 1 8:1 / /mnt/\\303\\251\xff rw - ext4 /dev/sda1 rw\n")
    (mount,) = parse_mountinfo(raw)
    assert os.fsencode(mount.mount_point) == b"/mnt/\xc3\xa9\xff"
