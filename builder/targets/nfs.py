"""`nfs`: an NFS export, mounted by the capture kernel's own NFS client."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from builder.errors import HostError
from builder.recipe.dump import (
    DumpSettings,
    EnableKeys,
    EnableRequest,
    HostSelection,
    MemoryPrior,
    RecipeFiles,
    Starter,
    TargetContent,
    TargetKind,
    TargetOptions,
)
from builder.recipe.parsers import REQUIRED, Check, Setting, choice, string, string_list
from builder.recipe.text import toml_string
from builder.targets import netlinks, network
from builder.targets.base import PATH
from builder.units import MiB

# One mount option: no commas (they separate options), nothing the shell reads.
NFS_OPTION = re.compile(r"^[A-Za-z0-9_.:/=-]+$")


class NfsVersion(StrEnum):
    V3 = "3"
    V4 = "4"
    V4_1 = "4.1"
    V4_2 = "4.2"


# The module that registers the filesystem type each version mounts with;
# their .modinfo depends= bring sunrpc, lockd, grace and the rest.
NFS_MODULES = {
    NfsVersion.V3: ("nfsv3",),
    NfsVersion.V4: ("nfsv4",),
    NfsVersion.V4_1: ("nfsv4",),
    NfsVersion.V4_2: ("nfsv4",),
}


@dataclass(frozen=True)
class NfsOptions(TargetOptions):
    nfs: str
    nfs_version: NfsVersion
    nfs_options: tuple[str, ...]
    path: str
    network: network.NetworkOptions


class NfsTarget(TargetKind):
    name = "nfs"
    summary = "an NFS export"
    rank = 2
    starter = Starter(
        keys="""\
# The NFS export (an IPv4 address, or IPv6 in brackets: the initrd has no resolver)
# and the directory in it; the network driver is in initrd.modules.
nfs = "192.168.122.1:/srv/crash"
nfs_version = "4.2"
path = "/"
# The link: `kdump-build network <server address>` prints these keys for this
# machine's own link (bond, VLAN, static or DHCP, by MAC address).
network = "dhcp"
interface = "eth0"
""",
        modules=("virtio_pci", "virtio_net"),
    )
    memory = MemoryPrior(
        24 * MiB,
        calibrated=True,
        basis="network stack, RPC and page cache; the x86_64 calibrations measure it "
        "(NFSv4 to nfs-ganesha over QEMU's user network)",
    )
    settings = (
        Setting(
            "dump.nfs",
            string,
            REQUIRED,
            "`<IPv4 address>:/<export>` or `[<IPv6 address>]:/<export>`.",
        ),
        Setting(
            "dump.nfs_version",
            choice(NfsVersion),
            NfsVersion.V4_2,
            "NFS protocol version the kernel client mounts with.",
        ),
        Setting(
            "dump.nfs_options",
            string_list(NFS_OPTION, "NFS mount option"),
            (),
            "Extra mount options, e.g. `port=2049`; `addr=` and `vers=` are set from "
            "dump.nfs and dump.nfs_version.",
        ),
        PATH,
        *network.SETTINGS,
    )

    def options(self, values: Mapping[str, Any], check: Check) -> NfsOptions:
        source = values["nfs"]
        server, export = nfs_server(source)
        if not (server and export.startswith("/") and "," not in export):
            check.fail("dump.nfs", f"{source!r} is not <IPv4 address>:/<export> or "
                       "[<IPv6 address>]:/<export>")  # fmt: skip
        for index, option in enumerate(values["nfs_options"]):
            if option.split("=", 1)[0] in ("addr", "vers", "nfsvers"):
                check.fail("dump.nfs_options", f"item {index}: {option!r} is set by kdump-build")
        return NfsOptions(
            source,
            values["nfs_version"],
            values["nfs_options"],
            values["path"],
            network.network_options(values, check),
        )

    def content(self, dump: DumpSettings, files: RecipeFiles) -> TargetContent:
        options = cast(NfsOptions, dump.options)
        return TargetContent(
            modules=(*network.network_modules(options.network), *NFS_MODULES[options.nfs_version]),
            files=network.network_files(options.network),
            applets=network.network_applets(options.network),
        )

    def config(self, dump: DumpSettings) -> dict[str, str]:
        options = cast(NfsOptions, dump.options)
        return {
            "KDUMP_PATH": options.path.rstrip("/"),
            "KDUMP_NFS_SOURCE": options.nfs,
            "KDUMP_NFS_OPTIONS": mount_options(options),
            **network.network_config(options.network),
        }

    def label(self, dump: DumpSettings) -> str:
        return cast(NfsOptions, dump.options).nfs

    def shell_part(self) -> bytes:
        return network.shell_part() + super().shell_part()

    def enable_keys(self, request: EnableRequest, machine_root: Path) -> EnableKeys:
        value = request.destination
        server, export = nfs_server(value)
        if not (server and export.startswith("/") and "," not in export):
            raise HostError(f"--to: {value!r} is not ADDRESS:/EXPORT (the NFS server's IPv4 "
                            "address, or its IPv6 address in brackets: [fd00::2]:/srv; the "
                            "capture has no name resolver)")  # fmt: skip
        logins = (("--ssh-key", request.key is not None), ("--ssh-port", request.port is not None),
                  ("--ssh-accept-any-host-key", request.accept_any_host_key))  # fmt: skip
        for option, given in logins:
            if given:
                raise HostError(f"{option}: not for an NFS export (it has no login)")
        path = network.enable_path(request, "/")
        return EnableKeys(server, (
            "# The NFS export the dumps go to. NFS checks no host key: use it on a network "
            "you trust.", f"target = {toml_string(self.name)}",
            f"nfs = {toml_string(value, 'dump.nfs')}", f"path = {toml_string(path)}"))  # fmt: skip

    def host_selection(self, dump: DumpSettings) -> HostSelection:
        return HostSelection(None, interface_macs=cast(NfsOptions, dump.options).network.macs)


def nfs_server(source: str) -> tuple[str, str]:
    """The server address and the export of `dump.nfs` (an empty address when it is none):
    an IPv6 address goes in brackets, as the kernel's NFS client reads the source.

    >>> nfs_server("10.0.2.2:/srv"), nfs_server("[fec0::2]:/srv"), nfs_server("fec0::2:/srv")
    (('10.0.2.2', '/srv'), ('fec0::2', '/srv'), ('', ':2:/srv'))
    """
    if source.startswith("["):
        inside, _, rest = source[1:].partition("]")
        found = netlinks.address(inside)
        valid = found is not None and found.version == 6 and rest.startswith(":")
        return (inside, rest[1:]) if valid else ("", rest)
    server, _, export = source.partition(":")
    return (server if network.IPV4.fullmatch(server) else "", export)


def mount_options(options: NfsOptions) -> str:
    """Text mount options for the kernel's NFS client (busybox passes them through).

    >>> net = network.NetworkOptions(network.NetworkMode.DHCP, "eth0", "", "", "")
    >>> mount_options(NfsOptions("10.0.2.2:/srv", NfsVersion.V4_2, ("port=2050",), "/", net))
    'vers=4.2,addr=10.0.2.2,proto=tcp,port=2050'
    """
    server = nfs_server(options.nfs)[0]
    # The kernel refuses proto=tcp (AF_INET) with an IPv6 addr= (EINVAL): tcp6 says the family.
    proto = "tcp6" if ":" in server else "tcp"
    words = [f"vers={options.nfs_version.value}", f"addr={server}", f"proto={proto}"]
    if options.nfs_version is NfsVersion.V3:
        # No rpc.statd in the initrd: locks stay local.
        words.append("nolock")
    return ",".join([*words, *options.nfs_options])
