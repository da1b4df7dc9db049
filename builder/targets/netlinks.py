"""The links, addresses and routes a network target's capture sets up, checked.

Pure checks of recipe values (no effects): interfaces named by MAC address (the
capture kernel probes fewer drivers and may name them otherwise than the host),
bonds of such interfaces, a VLAN on top, static IPv4 and IPv6 addresses and routes.
`builder.targets.network` holds the keys and calls these.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum

# As the kernel shows it in /sys/class/net/*/address (lower case).
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# A route: "<destination>/<prefix>" or "default", optionally " via <gateway>".
ROUTE = re.compile(r"^(?P<destination>\S+)(?: via (?P<gateway>\S+))?$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BondMode(StrEnum):
    """The kernel bonding driver's mode for dump.bond_ports (none: no bond)."""

    NONE = "none"
    ACTIVE_BACKUP = "active-backup"
    LACP = "802.3ad"


class BridgeMode(StrEnum):
    """What the capture makes of the host's bridge of dump.bridge_ports (none: no bridge).

    `port-with-carrier`: no bridge in the capture; the address goes on the first port
    (in the recipe's order) whose link has carrier, with the bridge's MAC address, so
    the switch, the DHCP server and the neighbours' caches see the host they know."""

    NONE = "none"
    PORT_WITH_CARRIER = "port-with-carrier"


# The module each link kind needs in the capture (their .modinfo brings the rest).
BOND_MODULE = "bonding"
VLAN_MODULE = "8021q"


def mac_address(value: str) -> str | None:
    """`value` as the kernel writes a MAC address, or None when it is not one.

    >>> mac_address("52:54:00:AB:cd:01"), mac_address("52-54-00-ab-cd-01")
    ('52:54:00:ab:cd:01', None)
    """
    lowered = value.lower()
    return lowered if MAC.fullmatch(lowered) else None


def address(value: str) -> Address | None:
    """An IPv4 or IPv6 address, or None (also for a scoped one: the capture names its own
    interfaces).

    >>> address("10.0.2.2"), address("fec0::2"), address("10.0.2"), address("fe80::1%eth0")
    (IPv4Address('10.0.2.2'), IPv6Address('fec0::2'), None, None)
    """
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        return None
    return None if "%" in value else parsed


def interface_address(value: str) -> str | None:
    """Why `value` is not `<address>/<prefix>` (IPv4 or IPv6), or None when it is.

    >>> interface_address("10.0.2.15/24"), interface_address("fd00::15/64")
    (None, None)
    >>> interface_address("10.0.2.15"), interface_address("10.0.2.15/33")
    ('needs a /prefix', 'is not an IPv4 or IPv6 address/prefix')
    """
    if "/" not in value:
        return "needs a /prefix"
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return "is not an IPv4 or IPv6 address/prefix"
    return None


def route_problem(route: str) -> str | None:
    """Why `route` is not `<network>/<prefix>` or `default`, with ` via <gateway>` of the
    same family; None when it is one.

    >>> route_problem("10.1.0.0/16 via 10.0.2.1"), route_problem("fd01::/64")
    (None, None)
    >>> route_problem("10.1.0.0/16 via fd00::1")
    'the gateway is not of the destination family'
    >>> route_problem("10.1.0.1/16"), route_problem("default")
    ('10.1.0.1/16 has host bits set', 'a default route needs via <gateway>')
    """
    found = ROUTE.fullmatch(route)
    if found is None:
        return "is not `<network>/<prefix> [via <gateway>]`"
    destination, gateway_text = found.group("destination"), found.group("gateway")
    gateway = address(gateway_text) if gateway_text is not None else None
    if gateway_text is not None and gateway is None:
        return f"{gateway_text} is not an IPv4 or IPv6 address"
    if destination == "default":
        return None if gateway is not None else "a default route needs via <gateway>"
    if "/" not in destination:
        return f"{destination} needs a /prefix"
    try:
        network = ipaddress.ip_network(destination)
    except ValueError as error:
        return str(error).removesuffix(".").replace("does not appear to be", "is not")
    if gateway is not None and gateway.version != network.version:
        return "the gateway is not of the destination family"
    return None


def vlan_name(interface: str, vlan: int) -> str:
    """The capture's name for VLAN `vlan` on `interface`, as vconfig names it.

    >>> vlan_name("bond0", 42)
    'bond0.42'
    """
    return f"{interface}.{vlan}"
