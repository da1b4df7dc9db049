"""Host-only module selection on a fake sysfs tree, and once on this very host."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from builder.errors import ModuleError
from builder.image.hostonly import block_device_modules, network_modules
from builder.image.modules import ModuleIndex, canonical_name
from builder.image.packages import PackageRoot

PCI = "devices/pci0000:00/0000:00:04.0"


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def network_card(sys: Path, name: str, device: str, bus: str, driver: str) -> None:
    """Interface `name` on the device at /sys/devices/`device`, bound to `driver` (a
    module) of `bus`."""
    card = sys / "devices" / device
    card.mkdir(parents=True)
    link(card / "driver", "../" * (device.count("/") + 2) + f"bus/{bus}/drivers/{driver}")
    link(sys / f"bus/{bus}/drivers/{driver}/module", f"../../../../module/{driver}")
    (sys / "module" / driver).mkdir(parents=True)
    link(sys / "class/net" / name / "device", f"../../../devices/{device}")


def fake_host(tmp_path: Path) -> tuple[Path, Path]:
    """/sys and /dev of a guest with a virtio disk vda (partition vda1 labelled kdump),
    an md array over it, and a virtio network card."""
    sys, dev = tmp_path / "sys", tmp_path / "dev"
    disk = sys / PCI / "virtio1" / "block" / "vda"
    (disk / "vda1").mkdir(parents=True)
    (sys / PCI / "modalias").write_text("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
    (sys / PCI / "virtio1" / "modalias").write_text("virtio:d00000002v00001AF4\n")
    link(sys / PCI / "driver", "../../../bus/pci/drivers/virtio-pci")
    link(sys / PCI / "virtio1" / "driver", "../../../../bus/virtio/drivers/virtio_blk")
    link(sys / "bus/pci/drivers/virtio-pci/module", "../../../../module/virtio_pci")
    link(sys / "bus/virtio/drivers/virtio_blk/module", "../../../../module/virtio_blk")
    (sys / "module/virtio_pci").mkdir(parents=True)
    (sys / "module/virtio_blk").mkdir(parents=True)
    # The PCI root bridge's driver is built in: no module link.
    (sys / "devices/pci0000:00/driver").parent.mkdir(parents=True, exist_ok=True)
    link(sys / "devices/pci0000:00/driver", "../../bus/acpi/drivers/pci_root")
    (sys / "bus/acpi/drivers/pci_root").mkdir(parents=True)
    link(sys / "class/block/vda", f"../../{PCI}/virtio1/block/vda")
    link(sys / "class/block/vda1", f"../../{PCI}/virtio1/block/vda/vda1")
    md = sys / "devices/virtual/block/md0"
    (md / "slaves").mkdir(parents=True)
    link(md / "slaves/vda1", f"../../../../{PCI}/virtio1/block/vda/vda1")
    link(sys / "class/block/md0", "../../devices/virtual/block/md0")
    network_card(sys, "ens3", "pci0000:00/0000:00:03.0/virtio0", "virtio", "virtio_net")
    (sys / "class/net/lo").mkdir(parents=True)
    link(dev / "disk/by-label/kdump", "../../vda1")
    link(dev / "disk/by-uuid/1234-abcd", "../../md0")
    (dev / "vda1").touch()
    (dev / "md0").touch()
    return sys, dev


def test_block_device_by_label(tmp_path: Path) -> None:
    sys, dev = fake_host(tmp_path)
    found = block_device_modules("LABEL=kdump", sys, dev)
    assert found.required == ["virtio_blk", "virtio_pci"]
    # The root bridge's driver is built in: offered by name, like the modaliases.
    assert found.optional == [
        "virtio:d00000002v00001AF4",
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        "pci_root",
    ]


def test_md_array_follows_its_slaves(tmp_path: Path) -> None:
    sys, dev = fake_host(tmp_path)
    assert block_device_modules("UUID=1234-ABCD", sys, dev).required == [
        "virtio_blk",
        "virtio_pci",
    ]


def test_raw_disk_by_serial(tmp_path: Path) -> None:
    """A raw target's SERIAL= is found by scanning /sys/block, as the capture does."""
    sys, dev = fake_host(tmp_path)
    (sys / PCI / "virtio1/block/vda/serial").write_text("kdump-raw\n")
    link(sys / "block/vda", f"../{PCI}/virtio1/block/vda")
    assert block_device_modules("SERIAL=kdump-raw", sys, dev).required == [
        "virtio_blk",
        "virtio_pci",
    ]
    with pytest.raises(ModuleError, match=r"dump.device SERIAL=other is on no disk of this host"):
        block_device_modules("SERIAL=other", sys, dev)


def test_network_interfaces(tmp_path: Path) -> None:
    sys, _ = fake_host(tmp_path)
    assert network_modules(sys).required == ["virtio_net"]


def test_network_cards_by_mac(tmp_path: Path) -> None:
    """A recipe that names its link by MAC gets that card's driver only: not the driver
    of another card the dump does not use (an e1000e here), and a bond port is known by
    its permanent MAC (the bond gave it the bond's own address)."""
    sys, _ = fake_host(tmp_path)
    (sys / "class/net/ens3/address").write_text("52:54:00:00:00:03\n")
    (sys / "class/net/ens3/bonding_slave").mkdir()
    (sys / "class/net/ens3/bonding_slave/perm_hwaddr").write_text("52:54:00:AA:00:01\n")
    network_card(sys, "enp5s0", "pci0000:00/0000:00:05.0", "pci", "e1000e")
    (sys / "class/net/enp5s0/address").write_text("52:54:00:00:00:03\n")
    assert network_modules(sys).required == ["e1000e", "virtio_net"]
    assert network_modules(sys, ("52:54:00:aa:00:01",)).required == ["virtio_net"]
    assert network_modules(sys, ("52:54:00:00:00:03",)).required == ["e1000e"]
    with pytest.raises(ModuleError) as refused:
        network_modules(sys, ("52:54:00:00:00:09",))
    assert str(refused.value) == (
        'initrd.modules = "auto": no network card of this host has the MAC address '
        "52:54:00:00:00:09 (dump.interface_mac or dump.bond_ports)"
    )


def test_missing_device_is_named(tmp_path: Path) -> None:
    sys, dev = fake_host(tmp_path)
    with pytest.raises(ModuleError, match=r'initrd.modules = "auto": dump.device LABEL=nope'):
        block_device_modules("LABEL=nope", sys, dev)


def test_this_host_root_device(default_root: PackageRoot) -> None:
    """The device `/` is mounted from on this machine, through the real /sys."""
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    fields = next(line.split() for line in mounts if line.split()[4] == "/")
    source = fields[fields.index("-") + 2]
    assert source.startswith("/dev/"), f"/ is mounted from {source}, not a block device"
    found = block_device_modules(source)
    # Independently: the disk's own driver, read through /sys/dev/block/MAJ:MIN.
    rdev = os.stat(source).st_rdev
    disk = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}").resolve()
    driver = next(
        parent / "driver" for parent in [disk, *disk.parents] if (parent / "driver").exists()
    )
    module = driver / "module"
    if module.exists():
        assert module.resolve().name in found.required
    else:
        assert driver.resolve().name in found.optional
    # What the build does with them: resolve against the Debian kernel's modules.
    (kernel,) = default_root.glob("/boot/vmlinuz-*")
    index = ModuleIndex(default_root, kernel.removeprefix("/boot/vmlinuz-"))
    names = list(found.required)
    for name in found.optional:
        with contextlib.suppress(ModuleError):
            names += index.resolve(name, "initrd.modules")
    order = [module.name for module in index.load_order(names, "initrd.modules")]
    assert canonical_name(driver.resolve().name) in order
