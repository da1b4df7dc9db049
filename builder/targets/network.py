"""The network the capture kernel brings up for a network target (nfs, ssh).

Not a target itself: the keys, checks, initrd files and kdump.conf values
that every network target shares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files
from typing import Any

from builder.recipe.dump import GeneratedFile, TargetOptions
from builder.recipe.parsers import Check, Setting, choice, integer, string

IPV4 = re.compile(
    r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
)
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# Where /init finds the script busybox udhcpc runs to apply a lease.
UDHCPC_SCRIPT_PATH = "/etc/kdump/udhcpc.script"
# How long DHCP may take at most: init.sh runs udhcpc -t 10 -T 2 (ten discovers, 2 s apart).
DHCP_SECONDS = 20
DEFAULT_CONNECT_TIMEOUT = 60


class NetworkMode(StrEnum):
    """How the capture kernel configures its interface."""

    DHCP = "dhcp"
    STATIC = "static"


SETTINGS = (
    Setting(
        "dump.network",
        choice(NetworkMode),
        NetworkMode.DHCP,
        "How the capture kernel configures dump.interface (`dhcp` with busybox udhcpc, "
        "or `static` from dump.ip and dump.gateway). The network driver goes in "
        "initrd.modules.",
    ),
    Setting("dump.interface", string, "eth0", "Network interface to bring up."),
    Setting("dump.ip", string, "", "With static network: address and prefix, e.g. `10.0.2.15/24`."),
    Setting("dump.gateway", string, "", "With static network: default gateway address (optional)."),
    Setting(
        "dump.connect_timeout",
        integer(1, 3600),
        DEFAULT_CONNECT_TIMEOUT,
        "Seconds the capture kernel waits for the dump server (the NFS mount; each short "
        "ssh command before and after the transfer) before failure_action; an unreachable "
        "server ends the capture within dump.device_timeout + 20 + this many seconds.",
    ),
    Setting(
        "dump.hostname",
        string,
        "",
        "The name in each dump's directory name; empty: the capture side's IP address.",
    ),
)


@dataclass(frozen=True)
class NetworkOptions(TargetOptions):
    network: NetworkMode
    interface: str
    ip: str
    gateway: str
    hostname: str
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT


def network_options(values: Mapping[str, Any], check: Check) -> NetworkOptions:
    """Check the network keys among a target's parsed `values`."""
    options = NetworkOptions(
        values["network"], values["interface"], values["ip"], values["gateway"],
        values["hostname"], values["connect_timeout"],
    )  # fmt: skip
    if not INTERFACE_NAME.match(options.interface):
        check.fail("dump.interface", f"{options.interface!r} is not an interface name")
    if options.network is NetworkMode.STATIC:
        address, sep, prefix = options.ip.partition("/")
        if not (IPV4.match(address) and sep and prefix.isdigit() and int(prefix) <= 32):
            check.fail("dump.ip", f"{options.ip!r} is not an IPv4 address/prefix")
        if options.gateway and not IPV4.match(options.gateway):
            check.fail("dump.gateway", f"{options.gateway!r} is not an IPv4 address")
    else:
        for key in ("dump.ip", "dump.gateway"):
            if key in check.given:
                check.fail(key, "only used when dump.network is static")
    if options.hostname and not HOST_NAME.match(options.hostname):
        check.fail("dump.hostname", f"{options.hostname!r} is not a host name")
    return options


def network_files(options: NetworkOptions) -> tuple[GeneratedFile, ...]:
    """The DHCP script, when the network comes from DHCP."""
    if options.network is not NetworkMode.DHCP:
        return ()
    script = (files("builder.targets") / "udhcpc.sh").read_bytes()
    return (GeneratedFile(UDHCPC_SCRIPT_PATH, script, 0o755),)


def network_config(options: NetworkOptions) -> dict[str, str]:
    """The network's `KDUMP_*` variables."""
    return {
        "KDUMP_NETWORK": options.network.value,
        "KDUMP_INTERFACE": options.interface,
        "KDUMP_IP": options.ip,
        "KDUMP_GATEWAY": options.gateway,
        "KDUMP_HOSTNAME": options.hostname,
        "KDUMP_CONNECT_TIMEOUT": str(options.connect_timeout),
        "KDUMP_UDHCPC_SCRIPT": UDHCPC_SCRIPT_PATH,
    }


def shell_part() -> bytes:
    """`network_up`, the shell function that brings the network up: the first piece of
    every network target's shell part."""
    return (files("builder.targets") / "network.sh").read_bytes()
