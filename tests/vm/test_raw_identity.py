"""The raw target finds its disk by identity and refuses a disk that holds a filesystem;
`enable` refuses /var/crash on LUKS.

One boot arms (three disks, read their names and serials as an admin would), one
boot crashes with the disks attached in the opposite order. The recipe's first raw
target names the disk that holds ext4: the capture refuses it and says why, then its
fallback (the disk the admin saw as /dev/vda) takes the dump, though the crash boot
calls that disk /dev/vdc and /dev/vda is another disk. Both other disks are
checksummed on the host before and after.

The arming boot also runs `enable` (the project's Python from the host root over
9p) for a root whose var/crash is ext4 on a LUKS2 volume of a fourth disk: formatted
on the host and opened in the guest by Debian's cryptsetup (the test fetches
cryptsetup-bin as the builder fetches packages; the machine has no cryptsetup).
The guest lists that root before and after: the refusal leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import random
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.image.fetch import fetch_packages
from builder.image.packages import PackageRoot
from tests.support.paths import REPO
from tests.support.recipes import toml_string
from tests.vm import harness
from tests.vm.test_dump_targets import (
    Capture,
    boot_and_crash,
    build_capture,
    check_vmcore,
    restore_flat,
    write_recipe,
)

pytestmark = pytest.mark.vm

MiB = 2**20
# (file name, the serial QEMU gives the disk), in the order the arming boot attaches them.
DISKS = (("raw.img", "kdump-raw-7f3a"), ("ext4.img", "kdump-ext4-91c2"),
         ("other.img", "data-disk-0b55"))  # fmt: skip
# Only in the arming boot, attached last (vdd): the LUKS2 disk.
CRYPT_DISK = ("crypt.img", "crypt-disk-5e1d")
LUKS_UUID = "5e1d0c7a-9b3f-4e2d-8c6b-5a4938271605"
# cryptsetup's name for the mapping's dm uuid: the LUKS version, the header's UUID.
CRYPT_UUID = f"CRYPT-LUKS2-{LUKS_UUID.replace('-', '')}-kdumpcrypt"
# cryptsetup reads its keyslot through the kernel's crypto API for user space (AF_ALG);
# the volume's cipher is aes-xts-plain64.
ARMING_MODULES = (*harness.NINEP_MODULES, "virtio_blk", "dm_crypt", "xts", "algif_skcipher",
                  "ext4")  # fmt: skip
# Debian 12's cryptsetup and the libraries a test machine may lack (the rest come with
# systemd, lvm2 and openssh, which bootstrap installs), as package paths.
CRYPTSETUP_PACKAGES = ("cryptsetup-bin", "libcryptsetup12", "libpopt0")
CRYPTSETUP_FILES = ("/sbin/cryptsetup", "/lib/x86_64-linux-gnu/libcryptsetup.so.12",
                    "/usr/lib/x86_64-linux-gnu/libpopt.so.0")  # fmt: skip
# A cheap key derivation: under TCG argon2 would take its seconds and memory.
LUKS_FORMAT = ("luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
               "--pbkdf-force-iterations", "1000", "--uuid", LUKS_UUID)  # fmt: skip
ARMING_BODY = """for disk in /sys/block/vd*; do
    echo "arm: ${{disk##*/}} serial=$(cat "$disk/serial")"
done
mount -t tmpfs tmpfs /host/mnt
root=/host/mnt/armroot
mkdir -p $root/boot $root/lib/modules/{version} $root/usr/bin $root/bin $root/var/crash
touch $root/boot/vmlinuz-{version} $root/usr/bin/makedumpfile $root/bin/busybox
# No udev in this guest to wait for, and the host root is read-only (no lock directory).
in_host "DM_DISABLE_UDEV=1 LD_LIBRARY_PATH={tools} {tools}/cryptsetup open --disable-locks \
    --key-file {tools}/luks.key /dev/vdd kdumpcrypt" || echo "arm: cryptsetup open failed"
in_host "blkid /dev/vdd"
in_host "dmsetup table kdumpcrypt" | sed 's/^/arm: table: /'
echo "arm: dm-0 uuid=$(cat /sys/block/dm-0/dm/uuid)"
in_host "mkfs.ext4 -q /dev/dm-0" || echo "arm: mkfs failed"
mount -t ext4 /dev/dm-0 $root/var/crash || echo "arm: mount failed"
(cd $root && find . | sort | sed 's/^/arm: before: /')
in_host "{python} -m tests.vm.enable_guest /mnt/armroot"
echo "arm: enable exit status $?"
(cd $root && find . | sort | sed 's/^/arm: after: /')
"""


def disk_arguments(directory: Path, order: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """QEMU virtio disks with serial numbers, attached in `order`."""
    arguments: list[str] = []
    for index, (name, serial) in enumerate(order):
        arguments += ["-drive", f"file={directory / name},format=raw,if=none,id=disk{index}",
                      "-device", f"virtio-blk-pci,drive=disk{index},serial={serial}"]  # fmt: skip
    return tuple(arguments)


def make_disks(directory: Path) -> None:
    raw = directory / "raw.img"
    with open(raw, "wb") as handle:
        handle.truncate(256 * MiB)
    ext4 = directory / "ext4.img"
    harness.make_dump_disk(ext4, size_mib=64, label="precious")
    kept = directory / "kept.txt"
    kept.write_text("this file must survive the crash\n")
    subprocess.run(["debugfs", "-w", "-R", f"write {kept} kept.txt", str(ext4)],
                   check=True, capture_output=True)  # fmt: skip
    # No signature anywhere in its first pages: only identity keeps the dump off it.
    other = random.Random(0x0B55).randbytes(8 * MiB)
    (directory / "other.img").write_bytes(other[:510] + b"\0\0" + other[512:])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class RawCrash:
    directory: Path
    cycle_console: str
    returncode: int | None
    kernel_version: str
    before: dict[str, str]


def cryptsetup(directory: Path) -> Path:
    """Debian's cryptsetup with its libraries in `directory`/cryptsetup (run it with that
    directory as LD_LIBRARY_PATH), and a key file beside it."""
    tools = directory / "cryptsetup"
    tools.mkdir()
    packages = PackageRoot([package.path for package in fetch_packages(CRYPTSETUP_PACKAGES,
                                                                       "x86_64")])  # fmt: skip
    for path in CRYPTSETUP_FILES:
        (tools / Path(path).name).write_bytes(packages.read_bytes(path))
    (tools / "cryptsetup").chmod(0o755)
    (tools / "luks.key").write_bytes(b"not a secret: a test volume")
    return tools


def make_luks_disk(directory: Path, tools: Path) -> Path:
    """A 32 MiB LUKS2 volume (16 MiB of it data) of the key in `tools`, formatted here."""
    disk = directory / CRYPT_DISK[0]
    with open(disk, "wb") as handle:
        handle.truncate(32 * MiB)
    key = tools / "luks.key"
    command = [str(tools / "cryptsetup"), *LUKS_FORMAT, "--key-file", str(key), str(disk)]
    subprocess.run(command, env={"LD_LIBRARY_PATH": str(tools)}, check=True, capture_output=True)
    return disk


def arm(directory: Path, kernel_version: str) -> dict[str, str]:
    """Boot once with the disks in DISKS order (and the LUKS one last), run `enable`;
    each kernel name and its serial, as read there."""
    tools = cryptsetup(directory)
    make_luks_disk(directory, tools)
    body = ARMING_BODY.format(version=kernel_version, tools=shlex.quote(str(tools)),
                              python=shlex.quote(sys.executable))  # fmt: skip
    initrd = directory / "arming-initrd.img"
    initrd.write_bytes(harness.build_hostroot_initrd(kernel_version, body, REPO, kexec=False,
                                                     modules=ARMING_MODULES))  # fmt: skip
    boot = harness.run_qemu(directory / "capture" / "vmlinuz", initrd, "console=ttyS0", None,
                            memory="1G", log=directory / "arming.log", share_host_root=True,
                            extra=disk_arguments(directory, (*DISKS, CRYPT_DISK)))  # fmt: skip
    seen = dict(re.findall(r"arm: (vd[a-z]) serial=(\S+)", boot.console))
    assert len(seen) == len(DISKS) + 1, boot.console[-3000:]
    return seen


@pytest.fixture(scope="module")
def raw_crash(tmp_path_factory: pytest.TempPathFactory) -> RawCrash:
    directory = tmp_path_factory.mktemp("raw-identity")
    make_disks(directory)
    # A first build only for the kernel the arming boot runs.
    plain = write_recipe(directory, 'target = "local"\ndevice = "LABEL=x"\n')
    kernel_version = build_capture(directory, plain).kernel_version
    seen = arm(directory, kernel_version)
    # The admin means the disk this boot calls vda, and (by mistake) the ext4 one on vdb.
    recipe = write_recipe(
        directory,
        f'target = "raw"\ndevice = {toml_string("SERIAL=" + seen["vdb"])}\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n'
        f'[[fallback]]\ntarget = "raw"\ndevice = {toml_string("SERIAL=" + seen["vda"])}\n',
    )
    capture: Capture = build_capture(directory, recipe)
    before = {name: sha256(directory / name) for name in ("ext4.img", "other.img")}
    boot = boot_and_crash(directory, capture, None, disk_arguments(directory, DISKS[::-1]))
    return RawCrash(directory, boot.console, boot.returncode, capture.kernel_version, before)


def test_arming_boot_saw_the_disks_in_attach_order(raw_crash: RawCrash) -> None:
    log = (raw_crash.directory / "arming.log").read_text(errors="replace")
    assert "arm: vda serial=kdump-raw-7f3a" in log, log[-3000:]
    assert "arm: vdc serial=data-disk-0b55" in log, log[-3000:]


def test_dump_goes_to_the_disk_named_by_serial(raw_crash: RawCrash, tmp_path: Path) -> None:
    console = raw_crash.cycle_console
    context = console[-4000:]
    assert raw_crash.returncode == 0, context
    # Reversed: the disk the arming boot called vda is vdc now, and vda is the data disk.
    assert "kdump: dump device SERIAL=kdump-raw-7f3a is /dev/vdc" in console, context
    assert "kdump: saved with dump target 2 of 2: raw SERIAL=kdump-raw-7f3a" in console, context
    vmcore = restore_flat(raw_crash.directory / "raw.img", tmp_path)
    check_vmcore(vmcore, raw_crash.kernel_version, tmp_path)
    assert sha256(raw_crash.directory / "other.img") == raw_crash.before["other.img"]


def test_a_disk_holding_ext4_is_refused_and_intact(raw_crash: RawCrash, tmp_path: Path) -> None:
    console = raw_crash.cycle_console
    assert "kdump: dump device SERIAL=kdump-ext4-91c2 is /dev/vdb" in console, console[-4000:]
    refusal = ("kdump: FAILED: not writing to /dev/vdb (SERIAL=kdump-ext4-91c2): it holds an "
               "ext2/3/4 filesystem (magic 0xEF53 at byte 1080)")  # fmt: skip
    assert refusal in console, console[-4000:]
    ext4 = raw_crash.directory / "ext4.img"
    assert sha256(ext4) == raw_crash.before["ext4.img"]
    check = subprocess.run(["e2fsck", "-fn", str(ext4)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    files = harness.extract_disk(ext4, tmp_path / "ext4")
    assert (tmp_path / "ext4" / "kept.txt").read_text() == "this file must survive the crash\n"
    assert [path.name for path in files] == ["kept.txt"]


def test_enable_refuses_var_crash_on_luks(raw_crash: RawCrash) -> None:
    log = (raw_crash.directory / "arming.log").read_text(errors="replace")
    lines = log.replace("\r", "").splitlines()
    # A real LUKS2 header under the mapping, and the mapping cryptsetup made of it.
    assert f'/dev/vdd: UUID="{LUKS_UUID}" TYPE="crypto_LUKS"' in log, log[-3000:]
    assert "arm: cryptsetup open failed" not in log, log[-3000:]
    assert f"arm: dm-0 uuid={CRYPT_UUID}" in lines, log[-3000:]
    # The volume's cipher, with its key, and its data from the header's offset (16 MiB).
    table = r"arm: table: 0 \d+ crypt aes-xts-plain64 \S+ 0 \d+:\d+ 32768( .*)?"
    assert any(re.fullmatch(table, line) for line in lines), log[-3000:]
    where = "/mnt/armroot/var/crash is on /dev/dm-0 (ext4, mounted at /mnt/armroot/var/crash)"
    refusal = (
        f"enable refused: {where}: kdumpcrypt is dm-crypt (CRYPT-LUKS2-...): the capture cannot "
        "unlock it: the capture kernel gets no key (Debian's kernels have no "
        "CONFIG_CRASH_DM_CRYPT) and a capture must never wait at a passphrase prompt; dump "
        "over the network instead (kdump-build enable --target nfs --to SERVER:/EXPORT, or "
        "--target ssh --to USER@ADDRESS), put /var/crash on an unencrypted partition or LV, or "
        "give enable a recipe with a raw dump to a disk of its own"
    )
    # The whole of what enable said: the one line, and a failure status.
    assert [line for line in lines if line.startswith("enable")] == [refusal], log[-3000:]
    assert "arm: enable exit status 1" in lines, log[-3000:]
    # Refused before anything was written: no recipe, no capture, no hook, nothing in the
    # tree but the machine lock enable holds while it looks.
    before = {line.removeprefix("arm: before: ") for line in lines if "arm: before: " in line}
    after = {line.removeprefix("arm: after: ") for line in lines if "arm: after: " in line}
    assert "./var/crash/lost+found" in before, log[-3000:]
    assert after - before == {"./run", "./run/kdump-build.lock"}, log[-3000:]
    assert before <= after, log[-3000:]
