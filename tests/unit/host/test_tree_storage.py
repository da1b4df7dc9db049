"""`enable --root` on trees whose /var/crash is on md, LVM or btrfs: what a tree's files
cannot show (the stack beneath a device-mapper or md device) is refused in one line
naming the fstab; a btrfs subvolume is mounted by the capture as the tree mounts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.treefacts import tree_dump_filesystem

UUID = "6b1f0a2e-5d7c-4c1e-9a53-2f0de1c0ffee"


def tree_with(root: Path, fstab: str, mdadm: str = "") -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/fstab").write_text(fstab)
    if mdadm:
        (root / "etc/mdadm").mkdir()
        (root / "etc/mdadm/mdadm.conf").write_text(mdadm)
    return root


@pytest.mark.parametrize(
    ("device", "kind"),
    [("/dev/mapper/vg0-root", "a device-mapper device (LVM, LUKS or multipath)"),
     ("/dev/dm-0", "a device-mapper device (LVM, LUKS or multipath)"),
     ("/dev/md0", "an md array"), ("/dev/md/root", "an md array")],
)  # fmt: skip
def test_a_stacked_device_is_refused_saying_why(tmp_path: Path, device: str, kind: str) -> None:
    tree = tree_with(tmp_path, f"{device} / ext4 errors=remount-ro 0 1\n")
    with pytest.raises(HostError) as raised:
        tree_dump_filesystem(tree)
    assert str(raised.value) == (
        f"{tree}/etc/fstab: {device} on /: {kind}: enable --root cannot see the stack "
        "beneath it in a tree; arm the booted machine with kdump-build enable"
    )


def test_a_uuid_beside_an_assembled_md_array_is_refused(tmp_path: Path) -> None:
    mdadm = f"HOMEHOST <system>\nARRAY /dev/md/0 metadata=1.2 UUID={UUID}\n"
    tree = tree_with(tmp_path, f"UUID={UUID} / ext4 defaults 0 1\n", mdadm)
    expected = r"/etc/fstab: UUID=\S+ on /: \S+/etc/mdadm/mdadm.conf assembles md arrays, and"
    with pytest.raises(HostError, match=expected):
        tree_dump_filesystem(tree)
    # mdadm installed, no array configured: a plain partition is armed.
    (tree / "etc/mdadm/mdadm.conf").write_text("# ARRAY lines go here\nHOMEHOST <system>\n")
    assert tree_dump_filesystem(tree).device == f"UUID={UUID}"


def test_btrfs_subvolume_of_the_tree_is_the_captures(tmp_path: Path) -> None:
    fstab = (f"UUID={UUID} / btrfs defaults,subvol=@ 0 0\n"
             f"UUID={UUID} /var/log btrfs subvol=/@log 0 0\n")  # fmt: skip
    found = tree_dump_filesystem(tree_with(tmp_path, fstab))
    assert (found.device, found.fstype, found.subvolume, found.path) == (
        f"UUID={UUID}",
        "btrfs",
        "/@",
        "/var/crash",
    )
    assert found.mount_point == Path("/")


def test_btrfs_crash_subvolume_and_plain_btrfs(tmp_path: Path) -> None:
    fstab = "LABEL=data /var/crash btrfs subvol=crash,compress=zstd 0 0\n"
    found = tree_dump_filesystem(tree_with(tmp_path / "a", fstab))
    assert (found.subvolume, found.path) == ("/crash", "/")
    found = tree_dump_filesystem(tree_with(tmp_path / "b", f"UUID={UUID} / btrfs defaults 0 0\n"))
    assert (found.subvolume, found.path) == ("", "/var/crash")


def test_btrfs_subvolid_is_refused(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, f"UUID={UUID} / btrfs subvolid=256 0 0\n")
    with pytest.raises(HostError, match=r"/etc/fstab: UUID=\S+ on /: subvolid=: name the "
                                        r"subvolume by subvol=PATH"):  # fmt: skip
        tree_dump_filesystem(tree)
