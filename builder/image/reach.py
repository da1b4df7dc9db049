"""Can the capture reach its dump target? What a built initrd lacks, as recipe keys to fix.

A capture that builds but cannot dump is found at the crash, too late. Checked
here, from what the build planned: the command line has a console (else the
capture is silent) and `panic=` (else a panic of the capture hangs the
machine); the collector is in the initrd; the filesystem, block device and
network drivers the target needs are in the initrd or built into the kernel
(its `modules.builtin`). A kernel without `modules.builtin` (built without
modules) has everything built in: its drivers are not judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from builder.recipe.choices import Collector
from builder.recipe.model import Recipe

# Module paths below /lib/modules/<version>/ (or /usr/lib/...), compressed or not.
_MODULE_MEMBER = re.compile(r"^(?:/usr)?/lib/modules/[^/]+/(kernel/.+\.ko)(?:\.[a-z0-9]+)?$")
# Where the kernel tree keeps drivers of block devices and of network cards.
# (drivers/net/ also holds helpers such as net_failover and mii: not cards.)
BLOCK_DRIVERS = (
    "kernel/drivers/block/",
    "kernel/drivers/nvme/host/",
    "kernel/drivers/ata/",
    "kernel/drivers/scsi/",
    "kernel/drivers/mmc/",
)
NETWORK_DRIVERS = (
    "kernel/drivers/net/ethernet/",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/net/hyperv/",
    "kernel/drivers/net/xen-netfront.ko",
    "kernel/drivers/net/vmxnet3/",
    "kernel/drivers/net/usb/",
)
# A virtio device driver finds its device only through a transport.
VIRTIO_DEVICES = (
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/scsi/virtio_scsi.ko",
)
VIRTIO_TRANSPORTS = ("virtio_pci", "virtio_mmio")
# Filesystems another module serves.
_FILESYSTEM_MODULE = {"ext2": "ext4", "ext3": "ext4"}


@dataclass(frozen=True)
class Gap:
    """One thing the capture lacks, and the recipe key that supplies it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def module_paths(member_paths: Iterable[str]) -> set[str]:
    """The kernel-tree paths of the modules among initrd members.

    >>> sorted(module_paths(["/init", "/lib/modules/6.1/kernel/fs/ext4/ext4.ko.xz"]))
    ['kernel/fs/ext4/ext4.ko']
    """
    return {match[1] for path in member_paths if (match := _MODULE_MEMBER.match(path))}


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_")


def _driver_gaps(recipe: Recipe, available: set[str], kernel: str) -> list[Gap]:
    names = {_name(path) for path in available}
    where = f"in the initrd or built into {kernel}"
    gaps = []
    # The target says where its drivers are: a block device (and a filesystem on it)
    # for a disk target, the network for the others.
    selection = recipe.dump.target.host_selection(recipe.dump)
    fstype = selection.filesystem
    if fstype is not None and _FILESYSTEM_MODULE.get(fstype, fstype) not in names:
        gaps.append(
            Gap(
                "initrd.modules",
                f"{fstype} is not {where}: the capture cannot mount dump.device (add it)",
            )
        )
    disk = selection.block_device is not None
    if disk and not any(path.startswith(BLOCK_DRIVERS) for path in available):
        gaps.append(
            Gap(
                "initrd.modules",
                f"no block device driver is {where}: the capture "
                "cannot see dump.device (add this machine's: virtio_blk, nvme, ahci ...)",
            )
        )
    if not disk and not any(path.startswith(NETWORK_DRIVERS) for path in available):
        gaps.append(
            Gap(
                "initrd.modules",
                f"no network driver is {where}: the capture cannot "
                "reach the server (add this machine's: virtio_net, e1000e ...)",
            )
        )
    virtio = sorted(_name(path) for path in available if path in VIRTIO_DEVICES)
    if virtio and not names.intersection(VIRTIO_TRANSPORTS):
        gaps.append(
            Gap(
                "initrd.modules",
                f"{', '.join(virtio)} finds no device without a "
                f"virtio transport, and none ({', '.join(VIRTIO_TRANSPORTS)}) is {where} "
                "(add virtio_pci)",
            )
        )
    return gaps


def reach_gaps(
    recipe: Recipe,
    cmdline: str,
    member_paths: Iterable[str],
    builtin: tuple[str, ...] | None,
    kernel: str,
) -> list[Gap]:
    """Everything that keeps the capture from dumping; empty when nothing does.

    `builtin`: the kernel's modules.builtin paths, None when it has none.
    """
    words = cmdline.split()
    paths = set(member_paths)
    gaps = []
    if not any(word.startswith("console=") for word in words):
        gaps.append(
            Gap(
                "kernel.cmdline_append",
                "no console=: the capture's messages go "
                "nowhere (add this machine's, e.g. console=ttyS0)",
            )
        )
    if not any(word.startswith("panic=") for word in words):
        gaps.append(
            Gap(
                "kernel.cmdline",
                "no panic=: a panic of the capture kernel hangs the "
                "machine instead of resetting it (add panic=10)",
            )
        )
    collector = recipe.dump.collector
    if collector is Collector.MAKEDUMPFILE and not any(
        path.rsplit("/", 1)[-1] == "makedumpfile" for path in paths
    ):
        gaps.append(
            Gap(
                "initrd.binaries",
                "no makedumpfile in the initrd, and dump.collector "
                'is "makedumpfile" (add /usr/bin/makedumpfile)',
            )
        )
    if builtin is not None:
        gaps += _driver_gaps(recipe, module_paths(paths) | set(builtin), kernel)
    return gaps
