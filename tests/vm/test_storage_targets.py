"""Local dumps through the block stacks servers use, on real parts: an XFS filesystem on
an LVM logical volume on an md RAID1 that has lost a member, and a btrfs subvolume on
an NVMe disk (QEMU's nvme device).

One guest builds the stack with the host's own mdadm, lvm2, mkfs.xfs and mkfs.btrfs
(run from the host's root over 9p, on the Debian kernel's md and device-mapper: the
host's kernel here has neither); then one crash cycle per target. The host reads the
dumps back through read-only loop mounts, at the offsets the guest's mdadm and lvm2
reported, and checks each vmcore with makedumpfile.
"""

from __future__ import annotations

import ast
import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.host.storage import BlockStack
from tests.support.paths import REPO
from tests.vm import harness
from tests.vm.test_dump_targets import (
    Capture,
    boot_and_crash,
    build_capture,
    check_vmcore,
    write_recipe,
)

pytestmark = pytest.mark.vm

MD_UUID = "6b3e1c2a:90d4f75e:1a2b3c4d:5e6f7a8b"
XFS_UUID = "9f0e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
BTRFS_UUID = "3c2b1a09-8f7e-4d6c-9b5a-0e1d2c3b4a59"
MIB = 2**20
# XFS needs 300 MB at least; the members leave room for md's and LVM's metadata; btrfs keeps
# metadata twice (DUP), and a 1 GiB guest's dump needs up to ~160 MB.
MEMBER_MIB, LV_MIB, NVME_MIB = 420, 360, 320
STORAGE_MODULES = ("virtio_pci", "virtio_blk", "nvme", "md_mod", "raid1", "dm_mod", "xfs",
                   "btrfs", "9pnet_virtio", "9p")  # fmt: skip
# lvm2 and mdadm of Debian 12 and the libraries of their programs.
STACK_PACKAGES = ("lvm2", "mdadm", "libdevmapper1.02.1", "libdevmapper-event1.02.1", "libedit2",
                  "libsystemd0", "libblkid1", "libaio1", "libselinux1", "libudev1", "libtinfo6",
                  "libbsd0", "libcap2", "libgcrypt20", "liblz4-1", "libpcre2-8-0", "libmd0",
                  "libgpg-error0")  # fmt: skip
NVME_DEVICE = ("-drive", "if=none,id=nv0,format=raw,file={}",
               "-device", "nvme,serial=kdump0,drive=nv0")  # fmt: skip
# No udev in the guest: lvm2 makes its own nodes and keeps no backups on the read-only root.
LVM_CONFIG = ("devices{obtain_device_list_from_udev=0 use_devicesfile=0} activation{udev_sync=0 "
              "udev_rules=0 monitoring=0} backup{backup=0 archive=0}")  # fmt: skip

# enable's probe and host-only module selection, run on the guest's real sysfs.
PROBE = (
    "import os; from builder.host.storage import block_stack; "
    "from builder.image.hostonly import block_device_modules; "
    "rdev = os.stat('/dev/mapper/vgkdump-crash').st_rdev; "
    "print('prep: probed', repr(block_stack('%d:%d' % (os.major(rdev), os.minor(rdev))))); "
    "print('prep: modules', block_device_modules('/dev/dm-0').required)"
)

PREP_SCRIPT = f"""set -ex
export LVM_SUPPRESS_FD_WARNINGS=1
C='{LVM_CONFIG}'
mdadm --create /dev/md0 --run --assume-clean --level=1 --raid-devices=2 --metadata=1.2 \\
    --uuid={MD_UUID} --homehost=kdump --name=crash /dev/vda /dev/vdb
lvm pvcreate --config "$C" /dev/md0
lvm vgcreate --config "$C" vgkdump /dev/md0
lvm lvcreate --config "$C" --yes -n crash -L {LV_MIB}M vgkdump
mkfs.xfs -q -m uuid={XFS_UUID} /dev/mapper/vgkdump-crash
# The link udev's 63-md-raid-arrays.rules makes (no udev here); the probe reads the UUID there.
mkdir -p /dev/disk/by-id
ln -s ../../md0 /dev/disk/by-id/md-uuid-{MD_UUID}
(cd {REPO} && PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -c "{PROBE}")
echo "prep: lv $(lvm lvs --config "$C" --noheadings --units b --nosuffix \\
    -o lv_uuid,seg_pe_ranges,vg_extent_size,lv_size vgkdump/crash)"
echo "prep: pe_start $(lvm pvs --config "$C" --noheadings --units b --nosuffix \
    -o pe_start /dev/md0)"
echo "prep: $(mdadm --examine /dev/vda | grep 'Data Offset')"
lvm vgchange --config "$C" --activate n vgkdump
mdadm --stop /dev/md0
mkfs.btrfs -q -U {BTRFS_UUID} /dev/nvme0n1
mkdir /tmp/btrfs
mount -t btrfs /dev/nvme0n1 /tmp/btrfs
btrfs subvolume create /tmp/btrfs/@crash
umount /tmp/btrfs
echo "prep: stack built"
"""

# The script as one single-quoted shell word.
_PREP_WORD = "'" + PREP_SCRIPT.replace("'", "'\\''") + "'"
PREP_INIT = (
    harness.NINEP_PROLOGUE
    + f"""mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 \\
    {harness.HOSTROOT_TAG} /host || echo "prep: mounting the host root failed"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mount -t tmpfs tmpfs /host/run
mount -t tmpfs tmpfs /host/tmp
chroot /host /bin/sh -c {_PREP_WORD} || echo "prep: FAILED"
poweroff -f
"""
)


@dataclass(frozen=True)
class Stack:
    """The disk images the guest built and what its tools reported about them."""

    member_a: Path
    member_b: Path
    nvme: Path
    lv_uuid: str
    lv_offset: int  # bytes into a member image where the LV starts
    lv_size: int
    kernel: Path
    kernel_version: str
    console: str  # the guest's that built it


def sparse(path: Path, mib: int) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(mib * MIB)
    return path


def nvme_device(image: Path) -> tuple[str, ...]:
    return tuple(part.format(image) for part in NVME_DEVICE)


def lv_layout(console: str) -> tuple[str, int, int]:
    """The LV's UUID, its first byte in a member image, and its size, from the guest's report."""
    lv = re.search(r"prep: lv +(\S+) +/dev/md0:(\d+)-(\d+) +(\d+) +(\d+)", console)
    pe_start = re.search(r"prep: pe_start +(\d+)", console)
    offset = re.search(r"prep: +Data Offset : (\d+) sectors", console)
    assert lv and pe_start and offset, console[-4000:]
    first_extent, extent = int(lv[2]), int(lv[4])
    return lv[1], int(offset[1]) * 512 + int(pe_start[1]) + first_extent * extent, int(lv[5])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, btrfs_capture: Capture) -> Stack:
    """md RAID1 (two virtio disks) + LVM + XFS, and btrfs with a subvolume on NVMe."""
    for tool in ("mdadm", "lvm", "mkfs.xfs", "mkfs.btrfs", "losetup"):
        assert shutil.which(tool), f"install {tool} (./bootstrap test does)"
    work = tmp_path_factory.mktemp("stack")
    member_a = sparse(work / "md-a.img", MEMBER_MIB)
    member_b = sparse(work / "md-b.img", MEMBER_MIB)
    nvme = sparse(work / "nvme.img", NVME_MIB)
    initrd = work / "prep-initrd.img"
    initrd.write_bytes(harness.ninep_initrd(btrfs_capture.kernel_version, PREP_INIT,
                                            modules=STORAGE_MODULES))  # fmt: skip
    boot = harness.run_qemu(
        btrfs_capture.directory / "vmlinuz", initrd, "console=ttyS0", member_a,
        log=work / "prep.log", share_host_root=True,
        extra=("-drive", f"file={member_b},format=raw,if=virtio", *nvme_device(nvme)),
    )  # fmt: skip
    assert "prep: stack built" in boot.console, boot.console[-4000:]
    lv_uuid, offset, size = lv_layout(boot.console)
    return Stack(member_a, member_b, nvme, lv_uuid, offset, size,
                 btrfs_capture.directory / "vmlinuz", btrfs_capture.kernel_version,
                 boot.console)  # fmt: skip


@pytest.fixture(scope="module")
def btrfs_capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    work = tmp_path_factory.mktemp("btrfs")
    recipe = write_recipe(
        work,
        f'target = "local"\ndevice = "UUID={BTRFS_UUID}"\nfstype = "btrfs"\n'
        'subvolume = "/@crash"\npath = "/crash"\n',
        extra_modules=("nvme", "btrfs"),
    )
    return build_capture(work, recipe)


@contextlib.contextmanager
def loop_mounted(image: Path, fstype: str, options: str, offset: int = 0,
                 size: int = 0) -> Iterator[Path]:  # fmt: skip
    """`image` (from `offset`, `size` bytes) mounted read-only on the host."""
    command = ["losetup", "--find", "--show", "--read-only", "--offset", str(offset)]
    command += ["--sizelimit", str(size)] if size else []
    loop = subprocess.run([*command, str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    mount_point = image.parent / f"{image.stem}-mounted"
    mount_point.mkdir(exist_ok=True)
    try:
        subprocess.run(["mount", "-t", fstype, "-o", f"ro,{options}", loop, str(mount_point)],
                       check=True, capture_output=True)  # fmt: skip
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", str(mount_point)], check=True)
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)


def dumps_in(directory: Path, copy_to: Path) -> list[Path]:
    """The dump directories below `directory`, copied out (with their vmcores)."""
    shutil.copytree(directory, copy_to)
    return sorted(path.parent for path in copy_to.rglob("vmcore"))


def test_enable_probes_the_stack_from_a_real_sysfs(stack: Stack) -> None:
    """What `enable` reads under an LV on RAID1 in the Debian kernel's sysfs: the array and the
    volume by UUID, and the drivers with the RAID level's module."""
    assert f"prep: probed {BlockStack((MD_UUID,), stack.lv_uuid)!r}" in stack.console
    (modules,) = re.findall(r"prep: modules (\[.*\])", stack.console)
    assert {"virtio_blk", "virtio_pci", "raid1"} <= set(ast.literal_eval(modules)), modules


def test_xfs_on_lvm_on_a_degraded_raid1(tmp_path: Path, stack: Stack) -> None:
    recipe = write_recipe(
        tmp_path,
        f'target = "local"\ndevice = "UUID={XFS_UUID}"\nfstype = "xfs"\npath = "/crash"\n'
        f'md_arrays = ["{MD_UUID}"]\nlvm_volume = "{stack.lv_uuid}"\ndevice_timeout = 5\n',
        extra_modules=("raid1", "xfs"),
        extra_packages=STACK_PACKAGES,
    )
    capture = build_capture(tmp_path, recipe)
    # Only the first member is attached: the second disk of the mirror is gone.
    cycle = boot_and_crash(tmp_path, capture, stack.member_a)
    context = cycle.console[-5000:]
    assert cycle.returncode == 0, context
    assert f"md array {MD_UUID}: 1 of its 2 members present, starting it degraded" in cycle.console
    assert f"LVM volume {stack.lv_uuid} active" in cycle.console, context
    assert "kdump: dump saved to /mnt/dump/crash/" in cycle.console, context
    examined = subprocess.run(["mdadm", "--examine", str(stack.member_a)], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    assert re.search(r"Array State : A\. ", examined), examined
    with loop_mounted(stack.member_a, "xfs", "norecovery", stack.lv_offset, stack.lv_size) as top:
        dumps = dumps_in(top / "crash", tmp_path / "copied")
    assert len(dumps) == 1, dumps
    check_vmcore(dumps[0] / "vmcore", cycle.kernel_version, tmp_path)


def test_btrfs_subvolume_on_nvme(tmp_path: Path, stack: Stack, btrfs_capture: Capture) -> None:
    cycle = boot_and_crash(tmp_path, btrfs_capture, None, nvme_device(stack.nvme))
    context = cycle.console[-5000:]
    assert cycle.returncode == 0, context
    assert re.search(r"kdump: dump device UUID=\S+ is /dev/nvme0n1\b", cycle.console), context
    with loop_mounted(stack.nvme, "btrfs", "subvolid=5") as top:
        # In the subvolume, not in the top level's own /crash.
        assert not (top / "crash").exists()
        dumps = dumps_in(top / "@crash" / "crash", tmp_path / "copied")
    assert len(dumps) == 1, dumps
    check_vmcore(dumps[0] / "vmcore", cycle.kernel_version, tmp_path)
