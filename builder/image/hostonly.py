"""Host-only module selection: the drivers this host uses to reach its dump target.

`initrd.modules = "auto"` reads the running host's sysfs: the dump device's
chain of devices up to the root of /sys/devices (partition, disk, controller,
bus bridges), through `slaves/` for device-mapper and md, and names each
bound driver's module (`driver/module`). A driver without a `module` link is
built into the host's kernel, but the capture kernel may have it as a module,
so its name and each device's `modalias` are offered as optional names,
resolved through the capture kernel's module names and aliases. An md array adds
the module of its RAID level (`md/level`), which no driver link names. Network
targets use the drivers of the network cards the recipe names by MAC address
(dump.interface_mac, dump.bond_ports), or of every one when it names none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import ModuleError
from builder.targets.rawid import IdentityKind, disks_named, parse_identity

KEY = 'initrd.modules = "auto"'


@dataclass
class HostModules:
    """Module names the host's drivers need (must resolve) and modaliases (may not)."""

    required: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)

    def add_device(self, device_dir: Path, devices_top: Path) -> None:
        """Every bound driver and modalias from `device_dir` up to the top of /sys/devices."""
        current = device_dir.resolve()
        top = devices_top.resolve()
        while current != top and top in current.parents:
            driver = current / "driver"
            module = driver / "module"
            if module.exists():
                name = Path(os.path.realpath(module)).name
                if name not in self.required:
                    self.required.append(name)
            elif driver.exists():
                # Built into the host's kernel; the capture kernel may have it as a module.
                name = Path(os.path.realpath(driver)).name
                if name not in self.optional:
                    self.optional.append(name)
            alias_file = current / "modalias"
            if driver.exists() and alias_file.is_file():
                try:
                    alias = alias_file.read_text().strip()
                except OSError:
                    alias = ""
                if alias and alias not in self.optional:
                    self.optional.append(alias)
            current = current.parent


def device_name(device: str, sysfs: Path = Path("/sys"), devfs: Path = Path("/dev")) -> str:
    """The kernel name of the block device `device` (LABEL=, UUID=, a /dev path, or a raw
    disk's SERIAL= or WWN=) on this host; a `ModuleError` when it is not here."""
    if device.partition("=")[0].upper() in IdentityKind.__members__:
        names = disks_named(parse_identity(device), sysfs)
        if len(names) != 1:
            where = f"on {len(names)} disks ({' '.join(names)})" if names else "on no disk"
            raise ModuleError(f"{KEY}: dump.device {device} is {where} of this host")
        return names[0]
    if device.startswith("LABEL="):
        link = devfs / "disk" / "by-label" / device.removeprefix("LABEL=")
    elif device.startswith("UUID="):
        link = devfs / "disk" / "by-uuid" / device.removeprefix("UUID=").lower()
    else:
        link = devfs / device.removeprefix("/dev/")
    if not link.exists():
        raise ModuleError(f"{KEY}: dump.device {device} is not on this host ({link} missing)")
    return Path(os.path.realpath(link)).name


def block_device_modules(
    device: str, sysfs: Path = Path("/sys"), devfs: Path = Path("/dev")
) -> HostModules:
    """Drivers under the block device named by `device` (LABEL=, UUID= or /dev path).

    In a QEMU guest with the dump disk on virtio, `required` is
    ['virtio_blk', 'virtio_pci'] (tests/unit/image/test_hostonly.py builds such a sysfs).
    """
    found = HostModules()
    pending = [device_name(device, sysfs, devfs)]
    seen: set[str] = set()
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        block = sysfs / "class" / "block" / name
        if not block.exists():
            raise ModuleError(f"{KEY}: {name} has no {block}")
        found.add_device(block, sysfs / "devices")
        level = md_level_module(block / "md" / "level")
        if level is not None and level not in found.required:
            found.required.append(level)
        slaves = block / "slaves"
        if slaves.is_dir():
            pending += sorted(entry.name for entry in slaves.iterdir())
    return found


def md_level_module(level_file: Path) -> str | None:
    """The module of an md array's RAID level (its `md/level` in sysfs), if it is one.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as top:
    ...     (Path(top) / "level").write_text("raid5\\n")
    ...     md_level_module(Path(top) / "level"), md_level_module(Path(top) / "missing")
    6
    ('raid456', None)
    """
    try:
        level = level_file.read_text().strip()
    except OSError:
        return None
    if level in ("raid4", "raid5", "raid6"):
        return "raid456"
    return level if level in ("raid0", "raid1", "raid10", "linear") else None


def permanent_mac(interface: Path) -> str:
    """The MAC address that names a network interface (its directory in /sys/class/net):
    a bond port's permanent one, since the bond gives its ports the bond's own; empty
    when it has none."""
    for relative in ("bonding_slave/perm_hwaddr", "address"):
        try:
            return (interface / relative).read_text().strip().lower()
        except OSError:
            continue
    return ""


def network_modules(sysfs: Path = Path("/sys"), macs: tuple[str, ...] = ()) -> HostModules:
    """Drivers of the network cards with MAC addresses `macs` (the dump link's; a
    `ModuleError` when one is not on this host), or of every interface that sits on a
    device (not lo, bridges, ...) when `macs` is empty."""
    found = HostModules()
    net = sysfs / "class" / "net"
    entries = sorted(net.iterdir()) if net.is_dir() else []
    cards = [entry for entry in entries if (entry / "device").exists()]
    by_mac = {permanent_mac(card): card for card in cards}
    for mac in macs:
        if mac not in by_mac:
            raise ModuleError(f"{KEY}: no network card of this host has the MAC address {mac} "
                              "(dump.interface_mac or dump.bond_ports)")  # fmt: skip
    for card in [by_mac[mac] for mac in macs] if macs else cards:
        found.add_device(card / "device", sysfs / "devices")
    return found
