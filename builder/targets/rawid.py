"""How the raw target names its disk: by an identity the disk carries, never a kernel name.

A capture kernel probes fewer drivers, in another order, and has no udev (so no
/dev/disk/by-*): its /dev/sdb can be another disk than the running system's. The
disk's serial number or its WWN (World Wide Name) are read from sysfs the same way
in both kernels. `raw.sh` scans /sys/block for them in the capture; `disks_named`
is the same scan on a running machine (host-only module selection, `enable`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# Serials and WWNs are short printable ASCII strings; no blank, so one word in
# every shell and on the console.
_VALUE = re.compile(r"[!-~]{1,128}")
# The SCSI Unit Serial Number VPD page: a 4-byte header before the serial itself.
_VPD_HEADER = 4


class IdentityKind(StrEnum):
    """What part of the disk's identity `dump.device` names (`KIND=value`)."""

    SERIAL = "SERIAL"
    WWN = "WWN"

    def sysfs_files(self) -> tuple[str, ...]:
        """Where the kernel shows it, relative to /sys/block/<disk>: virtio-blk's
        `serial`, NVMe's and SCSI's `device/serial` or `device/vpd_pg80`; NVMe's
        `wwid`, SCSI's `device/wwid`. Kept in step with raw.sh's `raw_identity`."""
        if self is IdentityKind.SERIAL:
            return ("serial", "device/serial", "device/vpd_pg80")
        return ("wwid", "device/wwid")


@dataclass(frozen=True)
class DiskIdentity:
    """A disk named by what it carries: `SERIAL=...` or `WWN=...`.

    >>> parse_identity("SERIAL=kdump-raw-1")
    DiskIdentity(kind=<IdentityKind.SERIAL: 'SERIAL'>, value='kdump-raw-1')
    >>> str(parse_identity("wwn=naa.5000C50015EA71AC"))
    'WWN=naa.5000c50015ea71ac'
    """

    kind: IdentityKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"

    def matches(self, found: str) -> bool:
        """Whether a value read from sysfs is this one (a WWN is hex: any case)."""
        found = found.strip()
        return found.lower() == self.value if self.kind is IdentityKind.WWN else found == self.value


KINDS = ", ".join(f"{kind}=..." for kind in IdentityKind)


def parse_identity(text: str) -> DiskIdentity:
    """`KIND=value`; ValueError saying what is wrong otherwise.

    >>> parse_identity("/dev/sdb")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: '/dev/sdb' is a kernel name, ... (cat /sys/block/sdb/serial ...)
    """
    kind_text, equals, value = text.partition("=")
    if text.startswith("/dev/"):
        name = text.removeprefix("/dev/")
        places = " ".join(f"/sys/block/{name}/{where}" for where in ("serial", "device/serial",
                                                                     "device/wwid"))  # fmt: skip
        raise ValueError(f"{text!r} is a kernel name, which the capture kernel may give to "
                         f"another disk; name the disk by {KINDS.replace(', ', ' or ')} "
                         f"(cat {places})")  # fmt: skip
    try:
        kind = IdentityKind(kind_text.upper())
    except ValueError:
        raise ValueError(f"{text!r} is not one of {KINDS}") from None
    if not equals or not _VALUE.fullmatch(value):
        raise ValueError(f"{text!r}: the {kind} is 1 to 128 printable ASCII characters, no blanks")
    return DiskIdentity(kind, value.lower() if kind is IdentityKind.WWN else value)


def read_identity(disk: Path, kind: IdentityKind) -> str | None:
    """The disk's serial or WWN as sysfs shows it under `disk` (/sys/block/<disk>)."""
    for relative in kind.sysfs_files():
        try:
            data = (disk / relative).read_bytes()
        except OSError:
            continue
        if relative.endswith("vpd_pg80"):
            data = data[_VPD_HEADER:]
        text = data.decode("ascii", errors="replace").strip(" \t\n\0")
        if text:
            return text
    return None


def disks_named(identity: DiskIdentity, sysfs: Path = Path("/sys")) -> list[str]:
    """The kernel names of the disks in `sysfs`/block that carry `identity`, sorted."""
    block = sysfs / "block"
    names = sorted(entry.name for entry in block.iterdir()) if block.is_dir() else []
    found = []
    for name in names:
        value = read_identity(block / name, identity.kind)
        if value is not None and identity.matches(value):
            found.append(name)
    return found
