"""A real Debian 12 system for VM tests: built from Debian packages, booted through GRUB,
its root filesystem on LVM as the Debian installer's "guided - use entire disk and set
up LVM" lays it out: partition 1 is /boot (ext2), partition 2 a physical volume whose
volume group `debvm-vg` holds the root logical volume `root`.

No loop device and no mount on the host (its kernel has no device-mapper):
mmdebstrap makes a directory tree, `mke2fs -d -E offset=` writes its /boot into
partition 1 and the rest into a temporary partition 3 of a raw file that sfdisk
partitioned, and GRUB's boot.img and core.img (made with grub-mkimage inside the
tree) go into the MBR and the gap after it with plain file writes. One
provisioning boot, its root the temporary partition, then does what the
installer does in its /target: creates the PV, VG and LV on partition 2, copies
the root there, and in a chroot of it rebuilds the initrd with MODULES=dep (a
16 MB load for GRUB instead of 39 MB; lvm2's hook activates the root) and runs
Debian's own `update-grub`. The host then drops partition 3 and cuts the disk
after partition 2. The result is cached as `<cache>/vm/<key>/base.qcow2`; each
test boots a qcow2 overlay of it.

kdump-build itself is not in the image: its dependencies are, in
/opt/kdump-build/venv, and each run installs a wheel of the working tree
(`tests.support.debian_guest.build_repo_wheel`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from builder.image.cache import default_cache_dir
from builder.locks import locked_file
from tests.support.paths import REPO

IMAGE_VERSION = "2"
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
PACKAGES = (
    "systemd-sysv", "udev", "kmod", "linux-image-amd64", "initramfs-tools", "zstd",
    "grub-pc", "makedumpfile", "busybox-static", "kexec-tools", "e2fsprogs", "procps",
    "python3", "python3-venv", "libarchive13", "lvm2",
)  # fmt: skip
ROOT_UUID = "6b1f0a2e-5d7c-4c1e-9a53-2f0de1c0ffee"
DISK_SIZE = 4 * 2**30
PART_START = 2048  # sectors: 1 MiB; the gap before it holds GRUB's core.img
SECTOR = 512
MIB = 2**20
# The root-on-LVM layout (sectors, bytes). /boot is about the installer's size; the PV
# leaves the root room for a second kernel package's modules and a dump; the temporary
# root (ROOT_UUID, whole tree but /boot) lives after it only until provisioning ends.
BOOT_UUID = "0d9e4b1c-7a3f-4e52-8c61-b0075e1c0b07"
LV_ROOT_UUID = "5a7c3e91-2b4d-4f68-9e0a-1c3d5e7f9b2d"
VOLUME_GROUP, ROOT_VOLUME = "debvm-vg", "root"
ROOT_DEVICE = "/dev/mapper/debvm--vg-root"  # device-mapper doubles the VG name's dash
BOOT_SECTORS = 512 * MIB // SECTOR
PV_START = PART_START + BOOT_SECTORS
PV_SECTORS = 4608 * MIB // SECTOR
TEMPORARY_START = PV_START + PV_SECTORS
TEMPORARY_SECTORS = 2048 * MIB // SECTOR
LVM_DISK_SIZE = (TEMPORARY_START + TEMPORARY_SECTORS) * SECTOR
FINAL_DISK_SIZE = TEMPORARY_START * SECTOR
SHARE_TAG = "debvm"
CMDLINE = "console=ttyS0,115200"
VENV = "/opt/kdump-build/venv"

GRUB_DEFAULT = f"""\
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="{CMDLINE}"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
"""

# Baked into the image: mount the per-run 9p share and hand over to its boot.sh,
# which the host writes for each run (tests.support.debian_guest). No share: an
# interactive boot.
RUNNER = f"""\
#!/bin/sh
mkdir -p /run/debvm
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {SHARE_TAG} \
/run/debvm 2>/dev/null; then
    echo "debvm: no share, interactive boot"
    exit 0
fi
[ -f /run/debvm/boot.sh ] || {{ echo "debvm: share without boot.sh"; exit 0; }}
exec sh /run/debvm/boot.sh
"""

RUNNER_UNIT = """\
[Unit]
Description=debvm test script runner
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/debvm-runner
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""

AUTOLOGIN = """\
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 - $TERM
"""

# Timers and jobs that only slow the boots of a throw-away VM (and the VT gettys: no VGA).
MASK_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer",
    "fstrim.timer", "dpkg-db-backup.timer", "e2scrub_reap.service", "systemd-timesyncd.service",
    "getty-static.service", "getty@tty1.service",
)  # fmt: skip

# Run on the temporary root (partition 3, /boot on partition 1 mounted by its fstab): what
# the installer does in /target, there on the root LV. A bind mount of / without its
# submounts is the copy's source, so /boot, /run and the share stay out of it.
PROVISION = f"""\
set -e
pvcreate -q /dev/vda2
vgcreate -q {VOLUME_GROUP} /dev/vda2
lvcreate -q -y -n {ROOT_VOLUME} -l 100%FREE {VOLUME_GROUP}
mkfs.ext4 -q -F -L debvm-root -U {LV_ROOT_UUID} {ROOT_DEVICE}
mkdir -p /run/source /run/target
mount --bind / /run/source
mount {ROOT_DEVICE} /run/target
cp -a /run/source/. /run/target/
umount /run/source
printf '%s\\n' '{ROOT_DEVICE} / ext4 errors=remount-ro 0 1' \
    'UUID={BOOT_UUID} /boot ext2 defaults 0 2' > /run/target/etc/fstab
for point in dev sys; do
    mount --rbind /$point /run/target/$point
    mount --make-rslave /run/target/$point
done
mount -t proc proc /run/target/proc
for point in run boot; do mount --bind /$point /run/target/$point; done
echo MODULES=dep > /run/target/etc/initramfs-tools/conf.d/debvm.conf
chroot /run/target update-initramfs -u
chroot /run/target update-grub
grep -Eq "root=({ROOT_DEVICE}|UUID={LV_ROOT_UUID}) " /boot/grub/grub.cfg
rm -rf /run/target/var/log/journal/* 2>/dev/null || true
umount -R /run/target
vgchange -q -an {VOLUME_GROUP} || true  # the poweroff deactivates it too
"""


@dataclass(frozen=True)
class Image:
    """The cached base image and the kernel version installed in it."""

    base: Path
    kernel_version: str


def python_requirements() -> tuple[str, ...]:
    """kdump-build's runtime dependencies, pinned to the versions this checkout tests with."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [
        requirement.split(">")[0].split("=")[0].strip() for requirement in project["dependencies"]
    ]
    return tuple(f"{name}=={version(name)}" for name in names)


def image_key() -> str:
    """A digest of everything the image is made from (package versions excepted: apt picks)."""
    text = json.dumps(
        [IMAGE_VERSION, SUITE, MIRRORS, PACKAGES, python_requirements(), GRUB_DEFAULT,
         RUNNER, RUNNER_UNIT, AUTOLOGIN, MASK_UNITS, PROVISION, LVM_DISK_SIZE, BOOT_SECTORS,
         PV_SECTORS, BOOT_UUID],
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def vm_cache() -> Path:
    return default_cache_dir() / "vm"


def downloads() -> Path:
    """The .debs and wheels image builds reuse."""
    return default_cache_dir() / "debvm-downloads"


def _run(command: list[str], **kwargs: object) -> None:
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def _clean_environment() -> dict[str, str]:
    """This machine's environment without pip settings (they would leak into the chroot)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}


def download_wheels(destination: Path) -> None:
    """The guest's wheels (CPython 3.11, manylinux x86_64), and setuptools for wheel builds."""
    destination.mkdir(parents=True, exist_ok=True)
    platforms = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "any")
    command = [sys.executable, "-m", "pip", "download", "-q", "--dest", str(destination),
               "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
               "--abi", "cp311"]  # fmt: skip
    for platform in platforms:
        command += ["--platform", platform]
    _run([*command, *python_requirements(), "setuptools>=68", "wheel"], env=_clean_environment())


def _customize_hooks(apt_cache: Path, wheels: Path) -> list[str]:
    """Shell run by mmdebstrap after the install, with the tree as $1."""
    chroot = 'chroot "$1"'
    requirements = " ".join(f"'{requirement}'" for requirement in python_requirements())
    return [
        f"sync-out /var/cache/apt/archives {apt_cache}",
        'echo debvm > "$1/etc/hostname"',
        f'echo "UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1" > "$1/etc/fstab"',
        f"{chroot} passwd -d root",
        f"{chroot} systemctl set-default multi-user.target",
        f"{chroot} systemctl mask {' '.join(MASK_UNITS)}",
        # A reboot must go through the firmware and GRUB, never kexec-tools' kexec.
        'echo LOAD_KEXEC=false > "$1/etc/default/kexec"',
        # TCG's CPU model advertises SVM: keep udev from loading kvm for nothing.
        'printf "blacklist kvm_amd\\nblacklist kvm_intel\\nblacklist kvm\\n" '
        '> "$1/etc/modprobe.d/debvm.conf"',
        'mkdir -p "$1/etc/systemd/system/serial-getty@ttyS0.service.d"',
        f'cat > "$1/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" '
        f'<<"EOF"\n{AUTOLOGIN}EOF',
        f'cat > "$1/usr/local/sbin/debvm-runner" <<"EOF"\n{RUNNER}EOF',
        'chmod 755 "$1/usr/local/sbin/debvm-runner"',
        f'cat > "$1/etc/systemd/system/debvm-runner.service" <<"EOF"\n{RUNNER_UNIT}EOF',
        f"{chroot} systemctl enable debvm-runner.service",
        f'cat > "$1/etc/default/grub" <<"EOF"\n{GRUB_DEFAULT}EOF',
        f'mkdir -p "$1/tmp/wheels" && cp {wheels}/*.whl "$1/tmp/wheels/"',
        f"{chroot} python3 -m venv {VENV}",
        f"{chroot} {VENV}/bin/pip install -q --no-index --find-links /tmp/wheels {requirements}",
        # core.img finds /boot's own filesystem: GRUB's files are in /grub there.
        *_grub_hooks(BOOT_UUID, "/grub"),
        'rm -rf "$1/tmp/"*',
    ]


def _grub_hooks(boot_uuid: str = ROOT_UUID, prefix: str = "/boot/grub") -> list[str]:
    """GRUB for BIOS: its modules in /boot/grub, core.img made in the tree; it looks for
    them at `prefix` on the filesystem `boot_uuid` (the root's, or a /boot partition's)."""
    early = f"search.fs_uuid {boot_uuid} root hd0,msdos1\\nset prefix=(\\$root){prefix}\\n"
    return [
        'mkdir -p "$1/boot/grub/i386-pc" && cp "$1"/usr/lib/grub/i386-pc/*.mod '
        '"$1"/usr/lib/grub/i386-pc/*.lst "$1/boot/grub/i386-pc/"',
        f'printf "{early}" > "$1/tmp/early.cfg"',
        'chroot "$1" grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -c /tmp/early.cfg '
        f'-p "(hd0,msdos1){prefix}" biosdisk part_msdos ext2 search_fs_uuid',
        'cp "$1/usr/lib/grub/i386-pc/boot.img" "$1/boot/grub/i386-pc/boot.img"',
    ]


# A system without manuals, translations or documentation (copyrights kept), and apt
# retrying a mirror's hiccup: the options every test tree is made with.
TRIMMED_TREE_OPTIONS = (
    '--aptopt=Acquire::Retries "3"',
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)  # fmt: skip


def mmdebstrap(root: Path, apt_cache: Path, wheels: Path) -> None:
    """The Debian tree, with a download cache that the next build reuses."""
    apt_cache.mkdir(parents=True, exist_ok=True)
    selections = (
        "grub-pc grub-pc/install_devices multiselect",
        "grub-pc grub-pc/install_devices_empty boolean true",
        "kexec-tools kexec-tools/load_kexec boolean false",
    )
    command = [
        "mmdebstrap", "--variant=apt", "--mode=root", "--format=directory", "--quiet",
        f"--include={','.join(PACKAGES)}", *TRIMMED_TREE_OPTIONS,
        "--skip=download/empty", '--setup-hook=mkdir -p "$1/var/cache/apt/archives"',
        f"--setup-hook=sync-in {apt_cache} /var/cache/apt/archives",
        *(f'--essential-hook=echo "{line}" | chroot "$1" debconf-set-selections'
          for line in selections),
        *(f"--customize-hook={hook}" for hook in _customize_hooks(apt_cache, wheels)),
        SUITE, str(root), *MIRRORS,
    ]  # fmt: skip
    _run(command, env=_clean_environment())


def tree_kernel_version(root: Path) -> str:
    versions = sorted(path.name for path in (root / "lib/modules").iterdir())
    assert len(versions) == 1, f"expected one kernel in the image, found {versions}"
    return versions[0]


def grub_cfg(
    title: str,
    kernel_version: str,
    command_line: str,
    boot_uuid: str = ROOT_UUID,
    boot_directory: str = "/boot",
) -> str:
    """A serial-console grub.cfg booting the one kernel, root=UUID=ROOT_UUID, from the
    filesystem `boot_uuid` (the root's by default; a /boot partition's, where its paths
    start at "")."""
    return f"""\
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root {boot_uuid}
menuentry '{title}' {{
    linux {boot_directory}/vmlinuz-{kernel_version} root=UUID={ROOT_UUID} ro {command_line}
    initrd {boot_directory}/initrd.img-{kernel_version}
}}
"""


def make_disk(root: Path, raw: Path) -> None:
    """Partition a sparse raw file, fill partition 1 from `root`, write GRUB's boot sectors."""
    with open(raw, "wb") as handle:
        handle.truncate(DISK_SIZE)
    table = f"label: dos\nstart={PART_START}, type=83, bootable\n"
    _run(["sfdisk", "-q", str(raw)], input=table.encode())
    size_kib = (DISK_SIZE - PART_START * SECTOR) // 1024
    _run(["mkfs.ext4", "-q", "-F", "-L", "debvm-root", "-U", ROOT_UUID, "-d", str(root),
          "-E", f"offset={PART_START * SECTOR}", str(raw), f"{size_kib}k"])  # fmt: skip
    _write_boot_sectors(root, raw)


def _write_boot_sectors(root: Path, raw: Path) -> None:
    """GRUB's boot.img and core.img, made in the tree `root`, into the MBR and the gap."""
    boot_img = (root / "boot/grub/i386-pc/boot.img").read_bytes()
    core_img = (root / "boot/grub/i386-pc/core.img").read_bytes()
    assert len(boot_img) == SECTOR and len(core_img) <= (PART_START - 1) * SECTOR
    with open(raw, "r+b") as handle:
        # boot.img's code only (440 bytes): the disk signature and partition table stay.
        handle.write(boot_img[:440])
        # core.img right after the MBR: boot.img's default kernel sector is 1, and
        # grub-mkimage wrote core.img's own length into its first-sector blocklist.
        handle.seek(SECTOR)
        handle.write(core_img)


def bootstrap_grub_cfg(kernel_version: str) -> str:
    """The provisioning boot's grub.cfg, on the /boot filesystem: the kernel with the
    temporary root. That boot's update-grub replaces it."""
    return grub_cfg(
        "Debian GNU/Linux (debvm provisioning)",
        kernel_version,
        CMDLINE,
        boot_uuid=BOOT_UUID,
        boot_directory="",
    )


def make_lvm_disk(root: Path, raw: Path) -> None:
    """Partition a sparse raw file for /boot, the PV and the temporary root; fill /boot and
    then the temporary root from `root` (whose /boot is emptied between), write GRUB's
    boot sectors. The provisioning boot makes the PV."""
    with open(raw, "wb") as handle:
        handle.truncate(LVM_DISK_SIZE)
    table = (f"label: dos\nstart={PART_START}, size={BOOT_SECTORS}, type=83, bootable\n"
             f"start={PV_START}, size={PV_SECTORS}, type=8e\n"
             f"start={TEMPORARY_START}, size={TEMPORARY_SECTORS}, type=83\n")  # fmt: skip
    _run(["sfdisk", "-q", str(raw)], input=table.encode())
    with open(root / "etc/fstab", "a") as fstab:
        fstab.write(f"UUID={BOOT_UUID} /boot ext2 defaults 0 2\n")
    _fill_partition(raw, root / "boot", PART_START, BOOT_SECTORS, ("-t", "ext2", "-L", "debvm-boot",
                    "-U", BOOT_UUID))  # fmt: skip
    _write_boot_sectors(root, raw)
    for entry in (root / "boot").iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    _fill_partition(raw, root, TEMPORARY_START, TEMPORARY_SECTORS, ("-t", "ext4", "-L",
                    "debvm-temporary", "-U", ROOT_UUID))  # fmt: skip


def _fill_partition(raw: Path, tree: Path, start: int, sectors: int, options: tuple[str, ...]
                    ) -> None:  # fmt: skip
    _run(["mke2fs", "-q", "-F", *options, "-d", str(tree), "-E", f"offset={start * SECTOR}",
          str(raw), f"{sectors * SECTOR // 1024}k"])  # fmt: skip


def drop_temporary_root(raw: Path) -> None:
    """After provisioning: partition 3 out of the table, the disk cut after partition 2."""
    _run(["sfdisk", "-q", "--delete", str(raw), "3"])
    os.truncate(raw, FINAL_DISK_SIZE)


def _provision(raw: Path, work: Path, log: Path) -> None:
    """The provisioning boot: the root LV, its host-specific initrd and Debian's own
    grub.cfg."""
    from tests.support.debian_guest import Share, boot_until_poweroff

    share = Share.create(work / "share", PROVISION)
    # One boot that runs update-initramfs and update-grub under TCG: minutes on a busy host.
    boot_until_poweroff(raw, share, log, fmt="raw", timeout=1200, boot_timeout=900)
    assert share.results() == {1: 0}, f"provisioning boot failed, see {log}"


def build_image() -> Image:
    """The cached base image, built first when missing (about 4-5 minutes).

    Test workers (and checkouts) that want it at once take turns under one lock: the
    first builds, the others then find it built (image.json is written last, whole).
    """
    directory = vm_cache() / image_key()
    cached = _cached_image(directory)
    if cached is not None:
        return cached
    # One lock for every key: builds share downloads() and its apt cache.
    with locked_file(vm_cache() / "build.lock"):
        return _cached_image(directory) or _build_image(directory)


def _cached_image(directory: Path) -> Image | None:
    base, record = directory / "base.qcow2", directory / "image.json"
    if not (base.exists() and record.exists()):
        return None
    record.touch()  # marks the image as in use for _drop_other_images
    return Image(base, json.loads(record.read_text())["kernel_version"])


def _build_image(directory: Path) -> Image:
    base = directory / "base.qcow2"
    record = directory / "image.json"
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build-", dir=directory) as temporary:
        work = Path(temporary)
        download_wheels(downloads() / "wheels")
        mmdebstrap(work / "root", downloads() / "apt", downloads() / "wheels")
        kernel_version = tree_kernel_version(work / "root")
        (work / "root/boot/grub/grub.cfg").write_text(bootstrap_grub_cfg(kernel_version))
        make_lvm_disk(work / "root", work / "disk.raw")
        shutil.rmtree(work / "root")
        _provision(work / "disk.raw", work, directory / "provision.log")
        drop_temporary_root(work / "disk.raw")
        staging = base.with_suffix(".tmp")
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
              str(work / "disk.raw"), str(staging)])  # fmt: skip
        os.replace(staging, base)
    summary = {"kernel_version": kernel_version, "seconds": round(time.monotonic() - start, 1)}
    staging = record.with_suffix(".tmp")
    staging.write_text(json.dumps(summary) + "\n")
    os.replace(staging, record)
    _drop_other_images(directory)
    return Image(base, kernel_version)


# Checkouts of other branches on the same machine may still boot their own image: only an
# image that no run has used for this long is stale.
STALE_AFTER_SECONDS = 3 * 24 * 3600


def _drop_other_images(keep: Path) -> None:
    """Remove the images this module built under other keys and no run used lately."""
    now = time.time()
    for entry in vm_cache().iterdir():
        record = entry / "image.json"
        if entry == keep or not record.is_file() or not (entry / "base.qcow2").exists():
            continue
        if now - record.stat().st_mtime > STALE_AFTER_SECONDS:
            shutil.rmtree(entry, ignore_errors=True)
