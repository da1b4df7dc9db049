"""Stacks the capture cannot bring up, refused at `enable` with the reason: on synthetic
sysfs trees laid out as the kernel lays them out (device-mapper's dm/uuid and slaves/,
loop/backing_file, an iSCSI session's directory, the nvme-fabrics class)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.enable import Effects, enable
from builder.host.paths import HostPaths
from builder.host.probe import DumpFilesystem, HostFacts, dump_filesystem
from builder.host.recipedevices import check_recipe_devices
from builder.host.unsupported import unsupported_layer
from builder.recipe.parse import parse_recipe
from builder.units import GiB

PCI = "devices/pci0000:00/0000:00:04.0/virtio1"
OFF = Effects(systemctl=False, update_grub=False, require_root=False)
LUKS_UUID = "CRYPT-LUKS2-0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f-sda5_crypt"
LUKS = (
    "sda5_crypt is dm-crypt (CRYPT-LUKS2-...): the capture cannot unlock it: the capture "
    "kernel gets no key (Debian's kernels have no CONFIG_CRASH_DM_CRYPT) and a capture must "
    "never wait at a passphrase prompt; dump over the network instead (kdump-build enable "
    "--target nfs --to SERVER:/EXPORT, or --target ssh --to USER@ADDRESS), put /var/crash on "
    "an unencrypted partition or LV, or give enable a recipe with a raw dump to a disk of its "
    "own"
)
ELSEWHERE = (
    "dump over the network instead (kdump-build enable --target nfs --to SERVER:/EXPORT, or "
    "--target ssh --to USER@ADDRESS), put /var/crash on a local disk's partition or LV, or "
    "give enable a recipe with a raw dump to a disk of its own"
)

LAYERED = "an LVM volume of several layers"
LINEAR = (
    "the capture activates only linear and striped logical volumes (one device-mapper table "
    f"on disks, partitions or md arrays); {ELSEWHERE}"
)


class Sysfs:
    """A /sys with block devices added one by one, each with its `dev` number."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.minor = 0

    def block(
        self,
        where: str,
        *,
        dm: str | None = None,
        dm_name: str = "",
        slaves: tuple[str, ...] = (),
        files: dict[str, str] | None = None,
    ) -> str:
        """A block device at /sys/`where` (its last part is its name); its MAJ:MIN."""
        device = self.root / where
        device.mkdir(parents=True)
        self.minor += 1
        number = f"{253 if dm is not None else 8}:{self.minor}"
        (device / "dev").write_text(number + "\n")
        if dm is not None:
            (device / "dm").mkdir()
            (device / "dm" / "uuid").write_text(dm + "\n")
            (device / "dm" / "name").write_text(dm_name + "\n")
        for relative, text in (files or {}).items():
            (device / relative).parent.mkdir(parents=True, exist_ok=True)
            (device / relative).write_text(text)
        for slave in slaves:
            (device / "slaves").mkdir(exist_ok=True)
            (device / "slaves" / Path(slave).name).symlink_to(self.root / slave)
        for link in (
            self.root / "dev" / "block" / number,
            self.root / "class" / "block" / device.name,
        ):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(device)
        return number


def encrypted_lvm(sysfs: Sysfs) -> str:
    """Debian's guided "encrypted LVM": root LV on a VG on LUKS on sda5."""
    sysfs.block(f"{PCI}/block/sda")
    sysfs.block(f"{PCI}/block/sda/sda5")
    sysfs.block("devices/virtual/block/dm-0", dm=LUKS_UUID, dm_name="sda5_crypt",
                slaves=(f"{PCI}/block/sda/sda5",))  # fmt: skip
    return sysfs.block("devices/virtual/block/dm-1", dm="LVM-Xq3v9JqZ0s1oZp", dm_name="vg-root",
                       slaves=("devices/virtual/block/dm-0",))  # fmt: skip


def lvm_volume(sysfs: Sysfs, name: str, below: tuple[str, ...]) -> str:
    """An LVM volume (its dm name) on the named LVM volumes, the first of them on vdb; the
    top's number. lvm2 names each layer as it does: vg-pool-tpool, vg-crash_rimage_0."""
    slaves = []
    for layer in below:
        sysfs.block(f"devices/virtual/block/dm-{sysfs.minor}", dm=f"LVM-{layer}", dm_name=layer,
                    slaves=(f"{PCI}/block/vdb",))  # fmt: skip
        slaves.append(f"devices/virtual/block/dm-{sysfs.minor - 1}")
    return sysfs.block(f"devices/virtual/block/dm-{sysfs.minor}", dm=f"LVM-{name}",
                       dm_name=name, slaves=tuple(slaves))  # fmt: skip


def thin_volume(sysfs: Sysfs) -> str:
    """A thin volume: its pool's -tpool device over the pool's _tmeta and _tdata."""
    lvm_volume(sysfs, "vg-pool-tpool", ("vg-pool_tmeta", "vg-pool_tdata"))
    pool = f"devices/virtual/block/dm-{sysfs.minor - 1}"
    return sysfs.block(f"devices/virtual/block/dm-{sysfs.minor}", dm="LVM-thin",
                       dm_name="vg-crash", slaves=(pool,))  # fmt: skip


def sentence(tmp_path: Path, build: str) -> str | None:
    """What `unsupported_layer` says of the device the named layout below builds."""
    sysfs = Sysfs(tmp_path / "sys")
    sysfs.block(f"{PCI}/block/vdb")
    number = LAYOUTS[build](sysfs)
    layer = unsupported_layer(number, sysfs.root)
    return None if layer is None else layer.sentence()


LAYOUTS: dict[str, Callable[[Sysfs], str]] = {
    "partition": lambda s: s.block(f"{PCI}/block/vdb/vdb1"),
    "lvm": lambda s: s.block("devices/virtual/block/dm-0", dm="LVM-abc", dm_name="vg-crash",
                             slaves=(f"{PCI}/block/vdb",)),
    "luks": lambda s: s.block("devices/virtual/block/dm-0", dm=LUKS_UUID, dm_name="sda5_crypt",
                              slaves=(f"{PCI}/block/vdb",)),
    "luks under lvm": encrypted_lvm,
    "lvm thin": thin_volume,
    "lvm raid1": lambda s: lvm_volume(s, "vg-crash", ("vg-crash_rimage_0", "vg-crash_rmeta_0",
                                                       "vg-crash_rimage_1", "vg-crash_rmeta_1")),
    "lvm mirror": lambda s: lvm_volume(s, "vg-crash", ("vg-crash_mimage_0", "vg-crash_mlog")),
    "lvm cache": lambda s: lvm_volume(s, "vg-crash", ("vg-crash_corig", "vg-fast_cdata",
                                                       "vg-fast_cmeta")),
    "lvm writecache": lambda s: lvm_volume(s, "vg-crash", ("vg-crash_wcorig", "vg-fast_cvol")),
    "lvm snapshot origin": lambda s: lvm_volume(s, "vg-crash", ("vg-crash-real",)),
    "lvm vdo": lambda s: lvm_volume(s, "vg-crash", ("vg-vpool-vpool",)),
    "lvm on lvm": lambda s: lvm_volume(s, "vg2-crash", ("vg-pv",)),
    "multipath": lambda s: s.block("devices/virtual/block/dm-0", dm="mpath-3600a0b80001",
                                   dm_name="mpatha", slaves=(f"{PCI}/block/vdb",)),
    "verity": lambda s: s.block("devices/virtual/block/dm-0", dm="VERITY-1f2e", dm_name="v",
                                slaves=(f"{PCI}/block/vdb",)),
    "dmsetup": lambda s: s.block("devices/virtual/block/dm-0", dm="", dm_name="mine",
                                 slaves=(f"{PCI}/block/vdb",)),
    "loop": lambda s: s.block("devices/virtual/block/loop0",
                              files={"loop/backing_file": "/srv/disk.img\n"}),
    "nbd": lambda s: s.block("devices/virtual/block/nbd0"),
    "bcache": lambda s: s.block("devices/virtual/block/bcache0", slaves=(f"{PCI}/block/vdb",)),
    "drbd": lambda s: s.block("devices/virtual/block/drbd1", slaves=(f"{PCI}/block/vdb",)),
    "iscsi": lambda s: s.block("devices/platform/host3/session1/target3:0:0/3:0:0:0/block/sdb"),
    "nvme-of": lambda s: s.block("devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        ("partition", None),
        ("lvm", None),
        ("luks", LUKS),
        ("luks under lvm", LUKS),
        ("lvm thin", f"vg-crash is {LAYERED} (thin: vg-pool-tpool below it): {LINEAR}"),
        ("lvm raid1", f"vg-crash is {LAYERED} (RAID: vg-crash_rimage_0 below it): {LINEAR}"),
        ("lvm mirror", f"vg-crash is {LAYERED} (mirror: vg-crash_mimage_0 below it): {LINEAR}"),
        ("lvm cache", f"vg-crash is {LAYERED} (cache: vg-crash_corig below it): {LINEAR}"),
        ("lvm writecache",
         f"vg-crash is {LAYERED} (writecache: vg-crash_wcorig below it): {LINEAR}"),
        ("lvm snapshot origin",
         f"vg-crash is {LAYERED} (snapshot: vg-crash-real below it): {LINEAR}"),
        ("lvm vdo", f"vg-crash is {LAYERED} (VDO: vg-vpool-vpool below it): {LINEAR}"),
        ("lvm on lvm", f"vg2-crash is {LAYERED} (on vg-pv, another LVM volume): {LINEAR}"),
        ("multipath", "mpatha is multipath (dm uuid mpath-3600a0b80001): the capture does not "
                      f"assemble multipath maps (no multipathd); {ELSEWHERE}"),
        ("verity", "v is device-mapper (dm uuid prefix VERITY-): the capture assembles LVM "
                   f"logical volumes only; {ELSEWHERE}"),
        ("dmsetup", "mine is device-mapper (no dm uuid: made by hand with dmsetup): the capture "
                    f"assembles LVM logical volumes only; {ELSEWHERE}"),
        ("loop", "loop0 is a loop device (over /srv/disk.img): the capture cannot set up a loop "
                 f"device over a file; {ELSEWHERE}"),
        ("nbd", f"nbd0 is a network block device: the capture connects no nbd or rbd device; "
                f"{ELSEWHERE}"),
        ("bcache", "bcache0 is a bcache device: the capture registers no bcache backing or "
                   f"cache device; {ELSEWHERE}"),
        ("drbd", "drbd1 is a DRBD device: the capture configures no DRBD resource (no "
                 f"drbdadm); {ELSEWHERE}"),
        ("iscsi", f"sdb is an iSCSI disk (session1): the capture brings up no iSCSI initiator; "
                  f"{ELSEWHERE}"),
        ("nvme-of", "nvme1n1 is an NVMe over Fabrics disk: the capture connects to no NVMe-oF "
                    f"target; {ELSEWHERE}"),
    ],
)  # fmt: skip
def test_each_layer_is_named_with_its_reason(
    tmp_path: Path, build: str, expected: str | None
) -> None:
    assert sentence(tmp_path, build) == expected


def test_a_device_that_is_no_block_device_is_left_alone(tmp_path: Path) -> None:
    assert unsupported_layer("0:42", tmp_path / "sys") is None


# ------------------------------------------------------------- where enable asks


def test_enable_refuses_var_crash_on_encrypted_lvm(tmp_path: Path) -> None:
    """The probe of /var/crash: the LUKS refusal comes before any other device-mapper rule."""
    sysfs = Sysfs(tmp_path / "sys")
    encrypted_lvm(sysfs)
    # /var/crash's real device number, made the encrypted LV's in the synthetic /sys.
    status = os.stat(tmp_path).st_dev
    number = f"{os.major(status)}:{os.minor(status)}"
    (sysfs.root / "dev/block" / number).symlink_to(sysfs.root / "devices/virtual/block/dm-1")
    info = f"26 1 {number} / {tmp_path} rw - ext4 /dev/mapper/vg-root rw\n"
    with pytest.raises(HostError) as caught:
        dump_filesystem(tmp_path, info, tmp_path / "by-uuid", sysfs.root)
    assert str(caught.value) == (
        f"{tmp_path} is on /dev/mapper/vg-root (ext4, mounted at {tmp_path}): {LUKS}"
    )


def host_root(tmp_path: Path) -> tuple[Path, Sysfs]:
    root = tmp_path / "root"
    sysfs = Sysfs(root / "sys")
    return root, sysfs


def test_enable_refuses_a_given_recipe_whose_fallback_is_on_luks(tmp_path: Path) -> None:
    """`enable RECIPE`: the recipe check walks each dump.device's stack on this machine."""
    root, sysfs = host_root(tmp_path)
    encrypted_lvm(sysfs)
    by_uuid = root / "dev/disk/by-uuid"
    by_uuid.mkdir(parents=True)
    (by_uuid / "5f1b6c0e-7d0a").symlink_to("../../dm-1")
    (root / "dev/dm-1").touch()
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'[source]\nroot = "{root}"\n[dump]\ntarget = "nfs"\nnfs = "10.0.0.1:/x"\n'
        '[[dump.fallback]]\ntarget = "local"\ndevice = "UUID=5f1b6c0e-7d0a"\n'
    )
    facts = HostFacts(("6.1.0-9-amd64",), 2 * GiB, 2, "/usr/bin/makedumpfile", "/bin/busybox",
                      DumpFilesystem("UUID=x", "ext4", root, "/var/crash"), ())  # fmt: skip
    said: list[str] = []
    with pytest.raises(HostError) as caught:
        enable(recipe, said.append, HostPaths(root), OFF, facts)
    assert str(caught.value) == (
        f"{recipe}: dump.fallback[0].device: UUID=5f1b6c0e-7d0a is dm-1: {LUKS}"
    )
    assert said == [f"recipe: {recipe}"]
    assert not (root / "var/lib/kdump-build").exists()


def test_the_recipe_check_refuses_a_raw_serial_on_two_disks(tmp_path: Path) -> None:
    root, sysfs = host_root(tmp_path)
    for name in ("sda", "sdb"):
        sysfs.block(f"devices/platform/host0/target0:0:{name[-1]}/block/{name}",
                    files={"device/serial": "ZA1B2C3D\n"})  # fmt: skip
        (sysfs.root / "block").mkdir(exist_ok=True)
        (sysfs.root / "block" / name).symlink_to(sysfs.root / "class/block" / name)
    recipe = parse_recipe(
        f'[source]\nroot = "{root}"\n[dump]\ntarget = "raw"\ndevice = "SERIAL=ZA1B2C3D"\n',
        tmp_path / "recipe.toml",
    )
    with pytest.raises(HostError) as caught:
        check_recipe_devices(recipe, root / "sys", root / "dev")
    assert str(caught.value) == (
        f"{tmp_path / 'recipe.toml'}: dump.device: SERIAL=ZA1B2C3D names 2 disks of this "
        "machine (sda sdb) and the capture refuses to choose; one disk seen through several "
        "paths is multipath, which it does not assemble"
    )


def test_the_recipe_check_lets_a_plain_disk_and_an_absent_one_pass(tmp_path: Path) -> None:
    root, sysfs = host_root(tmp_path)
    sysfs.block(f"{PCI}/block/vdb", files={"serial": "kdump-raw\n"})
    (sysfs.root / "block").mkdir()
    (sysfs.root / "block/vdb").symlink_to(sysfs.root / "class/block/vdb")
    for device in ("SERIAL=kdump-raw", "SERIAL=not-here"):
        recipe = parse_recipe(
            f'[source]\nroot = "{root}"\n[dump]\ntarget = "raw"\ndevice = "{device}"\n',
            tmp_path / "recipe.toml",
        )
        check_recipe_devices(recipe, root / "sys", root / "dev")


def test_enable_refuses_var_crash_on_a_thin_volume(tmp_path: Path) -> None:
    """The probe of /var/crash names the kind of LVM volume, not only "a layer"."""
    sysfs = Sysfs(tmp_path / "sys")
    sysfs.block(f"{PCI}/block/vdb")
    thin = thin_volume(sysfs)
    status = os.stat(tmp_path).st_dev
    number = f"{os.major(status)}:{os.minor(status)}"
    (sysfs.root / "dev/block" / number).symlink_to(sysfs.root / "dev/block" / thin)
    info = f"26 1 {number} / {tmp_path} rw - ext4 /dev/mapper/vg-crash rw\n"
    with pytest.raises(HostError) as caught:
        dump_filesystem(tmp_path, info, tmp_path / "by-uuid", sysfs.root)
    assert str(caught.value) == (
        f"{tmp_path} is on /dev/mapper/vg-crash (ext4, mounted at {tmp_path}): vg-crash is "
        f"{LAYERED} (thin: vg-pool-tpool below it): {LINEAR}"
    )


def _given_recipe(tmp_path: Path, root: Path, device: str) -> Path:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'[source]\nroot = "{root}"\n[dump]\ntarget = "local"\n'
                      f'device = "{device}"\nfstype = "btrfs"\n')  # fmt: skip
    return recipe


def test_the_recipe_check_refuses_a_raid_volume_and_a_btrfs_of_two_devices(
    tmp_path: Path,
) -> None:
    root, sysfs = host_root(tmp_path)
    sysfs.block(f"{PCI}/block/vdb")
    sysfs.block(f"{PCI}/block/vdc")
    number = lvm_volume(sysfs, "vg-crash", ("vg-crash_rimage_0", "vg-crash_rmeta_0"))
    top = Path(os.path.realpath(sysfs.root / "dev/block" / number)).name
    (root / "dev").mkdir()
    for name in (top, "vdb", "vdc"):
        (root / "dev" / name).touch()
    raid = parse_recipe(_given_recipe(tmp_path, root, f"/dev/{top}").read_text(),
                        tmp_path / "recipe.toml")  # fmt: skip
    with pytest.raises(HostError) as caught:
        check_recipe_devices(raid, root / "sys", root / "dev")
    assert str(caught.value) == (
        f"{tmp_path / 'recipe.toml'}: dump.device: /dev/{top} is {top}: vg-crash is {LAYERED} "
        f"(RAID: vg-crash_rimage_0 below it): {LINEAR}"
    )
    uuid = "7c1e2a9d-5b3f-4e8a-9c0d-1f2e3a4b5c6d"
    for name in ("vdb", "vdc"):
        (root / "sys/fs/btrfs" / uuid / "devices" / name).mkdir(parents=True)
    btrfs = parse_recipe(_given_recipe(tmp_path, root, "/dev/vdc").read_text(),
                         tmp_path / "recipe.toml")  # fmt: skip
    with pytest.raises(HostError) as caught:
        check_recipe_devices(btrfs, root / "sys", root / "dev")
    assert str(caught.value) == (
        f"{tmp_path / 'recipe.toml'}: dump.device: /dev/vdc is vdc: btrfs {uuid} spans 2 "
        "devices (vdb, vdc): the capture mounts btrfs on one device only"
    )
    (root / "sys/fs/btrfs" / uuid / "devices/vdb").rmdir()
    check_recipe_devices(btrfs, root / "sys", root / "dev")  # one device: accepted
