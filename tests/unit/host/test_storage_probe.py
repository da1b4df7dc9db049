"""The block stack beneath /var/crash, probed from synthetic sysfs trees shaped like a
Debian guest's (LVM on md RAID1, a plain LV, btrfs subvolumes) and the stacks refused."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.probe import DumpFilesystem, HostFacts, dump_filesystem
from builder.host.recipe import host_recipe_text
from builder.host.storage import BlockStack, block_stack
from builder.image.hostonly import block_device_modules
from builder.recipe.parse import parse_recipe
from tests.unit.host.test_probe import by_uuid_dir, mountinfo_for

MD_UUID = "0a1b2c3d:4e5f6071:8293a4b5:c6d7e8f9"
VG = "Jx2l8bQ0WqK3mRzT1vYcN5sA7dE9fGhU"
LV = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ1bC3dF"
LV_PRINTED = "aB3dE5-gH7j-K9mN-1pQ3-sT5v-W7yZ-1bC3dF"


class Sysfs:
    """A /sys with block devices: /sys/devices/..., /sys/class/block and /sys/dev/block links."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.by_id = top / "by-id"  # beside by_uuid_dir's by-uuid, as in /dev/disk
        self.by_id.mkdir(parents=True)

    def device(self, name: str, number: str, parent: str = "virtual/block") -> Path:
        directory = self.top / "sys" / "devices" / parent / name
        directory.mkdir(parents=True)
        for link in (self.top / "sys" / "class" / "block" / name,
                     self.top / "sys" / "dev" / "block" / number):  # fmt: skip
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(directory)
        (directory / "dev").write_text(number + "\n")
        return directory

    def stacked(self, name: str, number: str, slaves: tuple[str, ...]) -> Path:
        directory = self.device(name, number)
        (directory / "slaves").mkdir()
        for slave in slaves:
            (directory / "slaves" / slave).symlink_to(self.top / "sys" / "class" / "block" / slave)
        return directory

    def dm(self, name: str, number: str, uuid: str, dm_name: str, slaves: tuple[str, ...]) -> None:
        directory = self.stacked(name, number, slaves)
        (directory / "dm").mkdir()
        (directory / "dm" / "uuid").write_text(uuid + "\n")
        (directory / "dm" / "name").write_text(dm_name + "\n")

    def md(self, name: str, number: str, level: str, uuid: str, slaves: tuple[str, ...]) -> None:
        directory = self.stacked(name, number, slaves)
        (directory / "md").mkdir()
        (directory / "md" / "level").write_text(level + "\n")
        (self.by_id / f"md-uuid-{uuid}").symlink_to(f"../../{name}")

    def disk(self, name: str, number: str, driver: str) -> None:
        pci = self.top / "sys" / "devices" / "pci0000:00" / "0000:00:04.0"
        self.device(name, number, parent=f"pci0000:00/0000:00:04.0/{driver}0/block")
        module = self.top / "sys" / "module" / driver
        module.mkdir(parents=True, exist_ok=True)
        drivers = self.top / "sys" / "bus" / "pci" / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        (drivers / "module").symlink_to(module) if not (drivers / "module").exists() else None
        if not (pci / "driver").exists():
            (pci / "driver").symlink_to(drivers)


def lvm_on_raid1(top: Path) -> Sysfs:
    """Debian's "RAID1 + LVM" layout: vda1 and vdb1 in md0, a VG on it, the LV crash."""
    sysfs = Sysfs(top)
    sysfs.device("vda1", "254:1")
    sysfs.device("vdb1", "254:17")
    sysfs.md("md0", "9:0", "raid1", MD_UUID, ("vda1", "vdb1"))
    sysfs.dm("dm-0", "253:0", f"LVM-{VG}{LV}", "vg0-crash", ("md0",))
    return sysfs


def test_an_lv_on_raid1_names_the_array_and_the_volume(tmp_path: Path) -> None:
    sysfs = lvm_on_raid1(tmp_path)
    stack = block_stack("253:0", tmp_path / "sys", sysfs.by_id)
    assert stack == BlockStack((MD_UUID,), LV_PRINTED)


def test_a_plain_partition_needs_nothing_assembled(tmp_path: Path) -> None:
    sysfs = lvm_on_raid1(tmp_path)
    assert block_stack("254:1", tmp_path / "sys", sysfs.by_id) == BlockStack()


def test_a_filesystem_right_on_an_md_array(tmp_path: Path) -> None:
    sysfs = lvm_on_raid1(tmp_path)
    assert block_stack("9:0", tmp_path / "sys", sysfs.by_id) == BlockStack((MD_UUID,))


@pytest.mark.parametrize(
    ("uuid", "message"),
    [
        (
            f"LVM-{VG}{LV}-tpool",
            "dm-0 \\(vg0-crash\\) is a layer of a thin, RAID, cache or snapshot volume",
        ),
        (
            "CRYPT-LUKS2-0123456789abcdef-luks",
            "dm-0 \\(vg0-crash\\) is CRYPT, not an LVM logical volume",
        ),
        ("mpath-3600a0b80001", "is mpath, not an LVM logical volume"),
        ("", "is no UUID, not an LVM logical volume"),
    ],
)
def test_other_device_mapper_devices_are_refused(tmp_path: Path, uuid: str, message: str) -> None:
    sysfs = Sysfs(tmp_path)
    sysfs.device("vda1", "254:1")
    sysfs.dm("dm-0", "253:0", uuid, "vg0-crash", ("vda1",))
    with pytest.raises(HostError, match=message):
        block_stack("253:0", tmp_path / "sys", sysfs.by_id)


def test_an_lv_on_another_device_mapper_device_is_refused(tmp_path: Path) -> None:
    sysfs = Sysfs(tmp_path)
    sysfs.device("vda1", "254:1")
    sysfs.dm("dm-0", "253:0", "CRYPT-LUKS2-0123-crypt", "crypt", ("vda1",))
    sysfs.dm("dm-1", "253:1", f"LVM-{VG}{LV}", "vg0-crash", ("dm-0",))
    with pytest.raises(HostError, match="CRYPT, not an LVM logical volume"):
        block_stack("253:1", tmp_path / "sys", sysfs.by_id)


def test_an_md_array_without_its_udev_link_is_refused(tmp_path: Path) -> None:
    sysfs = lvm_on_raid1(tmp_path)
    (sysfs.by_id / f"md-uuid-{MD_UUID}").unlink()
    with pytest.raises(HostError, match=r"md array md0 has no .*/by-id/md-uuid-\* link"):
        block_stack("253:0", tmp_path / "sys", sysfs.by_id)


def test_the_host_recipe_carries_the_stack_and_parses(tmp_path: Path) -> None:
    sysfs = lvm_on_raid1(tmp_path)
    crash = tmp_path / "var" / "crash"
    crash.mkdir(parents=True)
    device = os.stat(tmp_path).st_dev
    (tmp_path / "sys" / "dev" / "block" / f"{os.major(device)}:{os.minor(device)}").symlink_to(
        tmp_path / "sys" / "devices" / "virtual" / "block" / "dm-0"
    )
    info = mountinfo_for(tmp_path, "xfs", "/dev/mapper/vg0-crash")
    found = dump_filesystem(crash, info, by_uuid_dir(tmp_path, tmp_path), tmp_path / "sys")
    assert found.stack == BlockStack((MD_UUID,), LV_PRINTED)
    text = host_recipe_text(_facts(found))
    dump = tomllib.loads(text)["dump"]
    assert (dump["md_arrays"], dump["lvm_volume"]) == ([MD_UUID], LV_PRINTED)
    recipe = parse_recipe(text, tmp_path / "recipe.toml")
    assert recipe.dump.to_json()["lvm_volume"] == LV_PRINTED
    assert sysfs.by_id.is_dir()


def test_a_btrfs_subvolume_is_mounted_by_subvol(tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()
    device = os.stat(tmp_path).st_dev
    number = f"{os.major(device)}:{os.minor(device)}"
    info = (
        f"26 1 0:44 /@crash {tmp_path} rw,relatime shared:1 - btrfs /dev/nvme0n1p2 "
        "rw,ssd,space_cache=v2,subvolid=257,subvol=/@crash\n"
    ).replace("0:44", number)
    found = dump_filesystem(crash, info, by_uuid_dir(tmp_path, tmp_path), tmp_path / "sys")
    assert (found.fstype, found.subvolume, found.path) == ("btrfs", "/@crash", "/crash")
    dump = tomllib.loads(host_recipe_text(_facts(found)))["dump"]
    assert (dump["subvolume"], dump["path"]) == ("/@crash", "/crash")


def test_a_btrfs_on_several_devices_is_refused(tmp_path: Path) -> None:
    device = os.stat(tmp_path).st_dev
    number = f"{os.major(device)}:{os.minor(device)}"
    info = f"26 1 {number} / {tmp_path} rw - btrfs /dev/vdb rw,subvolid=5,subvol=/\n"
    by_uuid = by_uuid_dir(tmp_path, tmp_path)
    (uuid,) = (link.name for link in by_uuid.iterdir())
    for name in ("vdb", "vdc"):
        (tmp_path / "sys" / "fs" / "btrfs" / uuid / "devices" / name).mkdir(parents=True)
    with pytest.raises(HostError, match=f"btrfs {uuid} spans 2 devices \\(vdb, vdc\\): the "
                                        "capture mounts btrfs on one device only"):  # fmt: skip
        dump_filesystem(tmp_path, info, by_uuid, tmp_path / "sys")
    (tmp_path / "sys" / "fs" / "btrfs" / uuid / "devices" / "vdc").rmdir()
    assert dump_filesystem(tmp_path, info, by_uuid, tmp_path / "sys").subvolume == "/"


def test_host_only_modules_add_the_raid_level(tmp_path: Path) -> None:
    sysfs = lvm_on_raid1(tmp_path)
    sysfs.disk("nvme0n1", "259:0", "nvme")
    found = block_device_modules("/dev/dm-0", tmp_path / "sys", _devfs(tmp_path, "dm-0"))
    assert "raid1" in found.required
    nvme = block_device_modules("/dev/nvme0n1", tmp_path / "sys", _devfs(tmp_path, "nvme0n1"))
    assert nvme.required == ["nvme"]


def _devfs(tmp_path: Path, name: str) -> Path:
    devfs = tmp_path / "devfs"
    devfs.mkdir(exist_ok=True)
    (devfs / name).touch()
    return devfs


def _facts(found: DumpFilesystem) -> HostFacts:
    return HostFacts(("6.1.0-28-amd64",), 2**30, 1, "/usr/bin/makedumpfile", "/bin/busybox",
                     found, ())  # fmt: skip
