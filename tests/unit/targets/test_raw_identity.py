"""The raw target's disk identity: the capture's scan (raw.sh in the initrd's busybox) and
the host's (rawid.disks_named) on synthetic sysfs trees, and the signatures raw.sh
refuses to overwrite, on images made by the real tools where the machine has them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.targets import target_kind
from builder.targets.rawid import DiskIdentity, IdentityKind, disks_named, parse_identity

MiB = 2**20


def raw_shell(busybox: Path, tmp_path: Path, script: str, device: str = "") -> str:
    """Run `script` in busybox sh after sourcing raw.sh, with KDUMP_DEVICE set."""
    part = tmp_path / "raw.sh"
    part.write_bytes(target_kind("raw").shell_part())
    # The applets raw.sh uses, as the initrd links them.
    applets = tmp_path / "bin"
    applets.mkdir(exist_ok=True)
    for applet in ("sh", "cat", "dd", "od", "tr", "sed", "tail"):
        if not (applets / applet).exists():
            (applets / applet).symlink_to(busybox)
    result = subprocess.run(
        [str(busybox), "sh", "-c", f'. "{part}"; {script}'],
        capture_output=True, text=True, check=False,
        env={"PATH": str(applets), "KDUMP_DEVICE": device, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_sysfs(root: Path) -> Path:
    """Five disks as their drivers show them: virtio-blk, NVMe, SCSI, one without any
    identity, and a second path to the SCSI disk (as multipath would see it)."""
    sysfs = root / "sys"
    disks: dict[str, dict[str, str | bytes]] = {
        "vda": {"serial": "kdump-raw\n"},
        "nvme0n1": {"wwid": "eui.0025388b91a2f9d1\n", "device/serial": "S4EWNX0R123456     \n"},
        "sda": {"device/wwid": "naa.5000C50015EA71AC\n",
                "device/vpd_pg80": b"\x00\x80\x00\x0c  ZA1B2C3D  "},
        "sdb": {"device/wwid": "naa.5000C50015EA71AC\n"},
        "loop0": {},
    }  # fmt: skip
    for name, files in disks.items():
        disk = sysfs / "devices" / "virtual" / "block" / name
        disk.mkdir(parents=True)
        (sysfs / "block").mkdir(exist_ok=True)
        (sysfs / "block" / name).symlink_to(disk)
        for relative, content in files.items():
            (disk / relative).parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            (disk / relative).write_bytes(data)
    return sysfs


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("SERIAL=kdump-raw", ["vda"]),
        ("SERIAL=S4EWNX0R123456", ["nvme0n1"]),
        ("SERIAL=ZA1B2C3D", ["sda"]),
        ("WWN=eui.0025388B91A2F9D1", ["nvme0n1"]),
        ("WWN=naa.5000c50015ea71ac", ["sda", "sdb"]),
        ("SERIAL=kdump", []),
        ("WWN=kdump-raw", []),
    ],
)
def test_capture_and_host_find_the_same_disks(
    busybox: Path, tmp_path: Path, device: str, expected: list[str]
) -> None:
    sysfs = make_sysfs(tmp_path)
    identity = parse_identity(device)
    assert disks_named(identity, sysfs) == expected
    found = raw_shell(busybox, tmp_path, f'raw_disks "{sysfs}"', str(identity))
    assert sorted(found.split()) == expected


def test_a_partial_identity_is_no_match(tmp_path: Path) -> None:
    sysfs = make_sysfs(tmp_path)
    assert disks_named(DiskIdentity(IdentityKind.SERIAL, "kdump-ra"), sysfs) == []


# ---------------------------------------------------------------- signatures


def _image(path: Path, size: int = 8 * MiB) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def _put(path: Path, offset: int, data: bytes) -> Path:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    return path


def _run(*command: str, stdin: str | None = None) -> None:
    subprocess.run(command, input=stdin, capture_output=True, text=True, check=True)


def made_by_tools(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Images the real tools wrote (e2fsprogs, util-linux, fdisk: in every test setup)."""
    ext4 = _image(tmp_path / "ext4.img")
    _run("mkfs.ext4", "-q", "-F", str(ext4))
    swap = _image(tmp_path / "swap.img")
    _run("mkswap", "-q", str(swap))
    gpt = _image(tmp_path / "gpt.img")
    _run("sfdisk", "-q", str(gpt), stdin="label: gpt\n,\n")
    dos = _image(tmp_path / "dos.img")
    _run("sfdisk", "-q", str(dos), stdin="label: dos\n,\n")
    return {
        "ext4": (ext4, "an ext2/3/4 filesystem (magic 0xEF53 at byte 1080)"),
        "swap": (swap, "swap space (SWAPSPACE2 at byte 4086)"),
        "gpt": (gpt, "a GPT partition table (EFI PART at byte 512)"),
        "dos": (dos, "an MBR partition table or boot sector (0x55AA at byte 510)"),
    }


def made_by_hand(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """The magic of formats whose tools a test machine may lack, at their documented offsets
    (xfs_sb.h, btrfs's super block at 64 KiB, the LUKS and LVM2 on-disk formats, md's
    superblock 1.x); a 4 KiB-sector GPT."""
    cases = {
        "xfs": (0, b"XFSB", "an XFS filesystem (XFSB at byte 0)"),
        "btrfs": (65600, b"_BHRfS_M", "a btrfs filesystem (_BHRfS_M at byte 65600)"),
        "luks": (0, b"LUKS\xba\xbe\x00\x02", "a LUKS encrypted volume (LUKS header at byte 0)"),
        "lvm": (512, b"LABELONE", "an LVM physical volume (LABELONE at byte 512)"),
        "md": (4096, b"\xfc\x4e\x2b\xa9", "an md RAID member (superblock 1.2 at byte 4096)"),
        "gpt4k": (4096, b"EFI PART", "a GPT partition table (EFI PART at byte 4096)"),
    }
    return {
        name: (_put(_image(tmp_path / f"{name}.img"), offset, magic), meaning)
        for name, (offset, magic, meaning) in cases.items()
    }


def test_every_signature_is_refused_with_its_reason(busybox: Path, tmp_path: Path) -> None:
    images = {**made_by_tools(tmp_path), **made_by_hand(tmp_path)}
    for name, (image, meaning) in images.items():
        said = raw_shell(busybox, tmp_path, f'raw_signature "{image}"')
        assert said == f"{meaning}\n", name


def test_what_may_be_overwritten(busybox: Path, tmp_path: Path) -> None:
    """Zeros (a wiped header), unknown bytes, and an earlier flattened dump, even one whose
    stream happens to hold another format's magic further on."""
    zeros = _image(tmp_path / "zeros.img")
    noise = _put(_image(tmp_path / "noise.img"), 0, bytes(range(1, 256)) * 300)
    flat = _put(_put(_image(tmp_path / "flat.img"), 0, b"makedumpfile\0\0\0\0"), 1080, b"\x53\xef")
    for image in (zeros, noise, flat):
        assert raw_shell(busybox, tmp_path, f'raw_signature "{image}"') == "", image.name
    # The same magic without the flattened header is refused: the order matters.
    _put(flat, 0, bytes(12))
    assert "ext2/3/4" in raw_shell(busybox, tmp_path, f'raw_signature "{flat}"')


def test_an_unreadable_device_is_refused(busybox: Path, tmp_path: Path) -> None:
    said = raw_shell(busybox, tmp_path, f'raw_signature "{tmp_path / "missing"}"')
    assert said == "unreadable start (dd failed)\n"


def test_several_disks_with_the_identity_are_refused(busybox: Path, tmp_path: Path) -> None:
    """Two disks with one serial (one disk through two paths, or a cloned serial): the
    capture writes to neither. raw_disks and /init's fail stand in for the capture's."""
    script = (
        "raw_disks() { printf 'sda\\nsdb\\n'; }; fail() { echo \"FAILED: $*\"; exit 1; }; "
        "raw_one_disk; echo written"
    )
    part = tmp_path / "raw.sh"
    part.write_bytes(target_kind("raw").shell_part())
    result = subprocess.run(
        [str(busybox), "sh", "-c", f'. "{part}"; {script}'],
        capture_output=True, text=True, check=False, env={"KDUMP_DEVICE": "SERIAL=x"},
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (
        1,
        "FAILED: SERIAL=x names 2 disks (sda sdb); not writing to any\n",
    )
