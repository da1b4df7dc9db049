"""What the capture cannot bring up below a dump device: refused at `enable` in one line.

The capture finds plain disks and partitions (and the stacks other modules add, such
as LVM). Below the filesystem that holds /var/crash, or the device a recipe names,
`unsupported_layer` walks the stack in sysfs (/sys/dev/block/MAJ:MIN, then each
`slaves/` entry down to the disks) and names the layer the capture cannot assemble,
with the reason: dm-crypt (LUKS), multipath, LVM volumes of several layers (thin,
RAID, mirror, cache, writecache, snapshot, VDO), any device-mapper target but LVM, loop
and network block devices, bcache and DRBD, iSCSI and NVMe over Fabrics disks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from builder.errors import HostError

# What to do instead, as commands where there is one; `{plain}` says which partition or LV
# would do. A network target needs no /var/crash: enable does not probe it then.
ALTERNATIVES = ("dump over the network instead (kdump-build enable --target nfs --to "
                "SERVER:/EXPORT, or --target ssh --to USER@ADDRESS), put /var/crash on "
                "{plain} partition or LV, or give enable a recipe with a raw dump to a disk of "
                "its own")  # fmt: skip
# The device-mapper uuid prefix LVM gives its logical volumes (lvm2's LVM_DM_UUID_PREFIX):
# the one device-mapper layer the capture assembles.
LVM_UUID_PREFIX = "LVM-"
# The kind of an LVM volume built of other LVs, from the device-mapper names lvm2 gives
# the layers below it (a VG's and LV's own hyphens are doubled in those names, so the
# single "-" or "_" before these suffixes is lvm2's).
LVM_LAYER_KINDS = (
    (re.compile(r"(-tpool|_tdata|_tmeta)$"), "thin"),
    (re.compile(r"_r(image|meta)_\d+$"), "RAID"),
    (re.compile(r"_m(image_\d+|log)$"), "mirror"),
    (re.compile(r"_wcorig$"), "writecache"),
    (re.compile(r"(_c(data|meta|orig|vol|pool)|-cvol)$"), "cache"),
    (re.compile(r"-(real|cow)$"), "snapshot"),
    (re.compile(r"(_vdata|-vpool)$"), "VDO"),
)
# A disk behind an iSCSI session sits below .../sessionN/ in /sys/devices.
_ISCSI_SESSION = re.compile(r"session\d+")


class Unsupported(Enum):
    """A layer the capture cannot bring up, most specific first, with why."""

    DM_CRYPT = (
        "dm-crypt",
        "the capture cannot unlock it: the capture kernel gets no key (Debian's kernels "
        "have no CONFIG_CRASH_DM_CRYPT) and a capture must never wait at a passphrase prompt",
    )
    MULTIPATH = ("multipath", "the capture does not assemble multipath maps (no multipathd)")
    ISCSI = ("an iSCSI disk", "the capture brings up no iSCSI initiator")
    NVME_FABRICS = ("an NVMe over Fabrics disk", "the capture connects to no NVMe-oF target")
    LVM_LAYERED = ("an LVM volume of several layers", "the capture activates only linear "
                   "and striped logical volumes (one device-mapper table on disks, partitions "
                   "or md arrays)")  # fmt: skip
    DEVICE_MAPPER = ("device-mapper", "the capture assembles LVM logical volumes only")
    LOOP = ("a loop device", "the capture cannot set up a loop device over a file")
    NETWORK_BLOCK = ("a network block device", "the capture connects no nbd or rbd device")
    BCACHE = ("a bcache device", "the capture registers no bcache backing or cache device")
    DRBD = ("a DRBD device", "the capture configures no DRBD resource (no drbdadm)")

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason


@dataclass(frozen=True)
class Layer:
    """One unsupported layer met in the stack: which, the block device, and details."""

    kind: Unsupported
    name: str
    detail: str

    def sentence(self) -> str:
        """E.g. `dm-3 is dm-crypt (CRYPT-LUKS2-...): the capture cannot unlock it: ...`."""
        detail = f" ({self.detail})" if self.detail else ""
        plain = "an unencrypted" if self.kind is Unsupported.DM_CRYPT else "a local disk's"
        alternatives = ALTERNATIVES.format(plain=plain)
        return f"{self.name} is {self.kind.what}{detail}: {self.kind.reason}; {alternatives}"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def stack(block: Path) -> Iterator[Path]:
    """`block` (a /sys/.../block/NAME directory) and every device below it, through
    `slaves/`, each once."""
    pending, seen = [block.resolve()], set()
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        yield current
        slaves = current / "slaves"
        if slaves.is_dir():
            pending += sorted((slave.resolve() for slave in slaves.iterdir()), key=str)


def _device_mapper(block: Path) -> Layer | None:
    uuid = _read(block / "dm" / "uuid")
    name = _read(block / "dm" / "name") or block.name
    if uuid.startswith(LVM_UUID_PREFIX):
        return _lvm_layers(block, name)
    prefix = uuid.split("-", 1)[0]
    if prefix.startswith("CRYPT"):
        return Layer(Unsupported.DM_CRYPT, name, "-".join(uuid.split("-")[:2]) + "-...")
    if "mpath-" in uuid:
        return Layer(Unsupported.MULTIPATH, name, f"dm uuid {uuid}")
    detail = f"dm uuid prefix {prefix}-" if uuid else "no dm uuid: made by hand with dmsetup"
    return Layer(Unsupported.DEVICE_MAPPER, name, detail)


def _lvm_layers(block: Path, name: str) -> Layer | None:
    """An LVM volume with LVM volumes below it (a thin volume's pool, a RAID volume's
    images, a snapshot's origin): its kind, named from those layers' names."""
    below = [_read(slave / "dm" / "name") for slave in _lvm_slaves(block)]
    if not below:
        return None
    for layer in below:
        kind = next((kind for pattern, kind in LVM_LAYER_KINDS if pattern.search(layer)), None)
        if kind is not None:
            return Layer(Unsupported.LVM_LAYERED, name, f"{kind}: {layer} below it")
    return Layer(Unsupported.LVM_LAYERED, name, f"on {below[0]}, another LVM volume")


def _lvm_slaves(block: Path) -> list[Path]:
    """The LVM volumes right below `block` (other device-mapper layers are named apart)."""
    slaves = block / "slaves"
    found = (
        sorted((slave.resolve() for slave in slaves.iterdir()), key=str) if slaves.is_dir() else []
    )
    return [slave for slave in found if _read(slave / "dm" / "uuid").startswith(LVM_UUID_PREFIX)]


def layer_of(block: Path) -> Layer | None:
    """What the capture cannot bring up about this one device, if anything."""
    name = block.name
    parts = block.parts
    if (block / "dm").is_dir():
        return _device_mapper(block)
    if (block / "loop").is_dir() or re.fullmatch(r"loop\d+(p\d+)?", name):
        backing = _read(block / "loop" / "backing_file")
        return Layer(Unsupported.LOOP, name, f"over {backing}" if backing else "")
    if re.fullmatch(r"(nbd|rbd)\d+(p\d+)?", name):
        return Layer(Unsupported.NETWORK_BLOCK, name, "")
    if (block / "bcache").is_dir() or re.fullmatch(r"bcache\d+(p\d+)?", name):
        return Layer(Unsupported.BCACHE, name, "")
    if re.fullmatch(r"drbd\d+", name):
        return Layer(Unsupported.DRBD, name, "")
    session = next((part for part in parts if _ISCSI_SESSION.fullmatch(part)), None)
    if session is not None:
        return Layer(Unsupported.ISCSI, name, session)
    if "nvme-fabrics" in parts:
        return Layer(Unsupported.NVME_FABRICS, name, "")
    return None


def unsupported_layer(device_number: str, sysfs: Path = Path("/sys")) -> Layer | None:
    """The layer below block device MAJ:MIN the capture cannot assemble, the most specific
    one when there are several (dm-crypt under LVM is named as dm-crypt); None when the
    stack is all supported, or `device_number` is no block device of `sysfs`."""
    block = sysfs / "dev" / "block" / device_number
    if not block.exists():
        return None
    found = [layer for device in stack(block) if (layer := layer_of(device)) is not None]
    order = list(Unsupported)
    return min(found, key=lambda layer: order.index(layer.kind), default=None)


def refuse_unsupported(device_number: str, where: str, sysfs: Path = Path("/sys")) -> None:
    """A `HostError` starting with `where` when the capture could not reach the device."""
    layer = unsupported_layer(device_number, sysfs)
    if layer is not None:
        raise HostError(f"{where}: {layer.sentence()}")


def device_number_of(name: str, sysfs: Path = Path("/sys")) -> str | None:
    """MAJ:MIN of the block device called `name` in `sysfs`, if it has one."""
    number = _read(sysfs / "class" / "block" / name / "dev")
    return number if re.fullmatch(r"\d+:\d+", number) else None
