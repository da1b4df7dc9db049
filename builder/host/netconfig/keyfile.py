"""NetworkManager's keyfiles (/etc/NetworkManager/system-connections/*.nmconnection, and
/run's), read into `HostLink`s (nm-settings-keyfile(5), nm-settings(5)): a connection
applies to its `[connection] interface-name` (or the interface with its
`[ethernet] mac-address`); `[ipv4]`/`[ipv6]` `method`, `address1`..., `gateway` and
`route1`... give the addresses; `type` bond, vlan and bridge with their ports'
`master`/`controller` give the links."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from builder.errors import HostError
from builder.host.netconfig.ini import Sections, read_sections, value, values
from builder.host.netconfig.model import Addressing, HostLink, bonded
from builder.targets.network import NetworkMode

DIRECTORIES = ("etc/NetworkManager/system-connections", "run/NetworkManager/system-connections")
NUMBERED = re.compile(r"^(address|route)(\d+)$")


def _numbered(sections: Sections, section: str, kind: str) -> list[str]:
    items = [(int(m.group(2)), item) for name, entries in sections if name == section
             for key, item in entries
             if (m := NUMBERED.match(key)) and m.group(1) == kind]  # fmt: skip
    return [item for _, item in sorted(items)]


def _addressing(sections: Sections, where: str, family: int) -> Addressing | str | None:
    section = f"ipv{family}"
    method = value(sections, section, "method", "auto" if family == 4 else "ignore")
    routes = []
    for route in _numbered(sections, section, "route"):
        destination, _, rest = route.partition(",")
        gateway = rest.partition(",")[0]
        routes.append(f"{destination} via {gateway}" if gateway else destination)
    if method == "manual":
        addresses = _numbered(sections, section, "address") + values(sections, section, "addresses")
        if not addresses:
            raise HostError(f"{where}: [{section}] method=manual without an address")
        ip, _, gateway = addresses[0].partition(",")
        gateway = value(sections, section, "gateway", gateway)
        return Addressing(NetworkMode.STATIC, ip, gateway, tuple(routes))
    if family == 4 and method == "auto":
        return Addressing(NetworkMode.DHCP, routes=tuple(routes))
    if family == 6 and method == "auto":
        return Addressing(NetworkMode.SLAAC, routes=tuple(routes))
    if family == 6 and method == "dhcp":
        return Addressing(NetworkMode.DHCPV6, routes=tuple(routes))
    return None


def _connections(root: Path) -> list[tuple[str, Sections]]:
    found = []
    for directory in DIRECTORIES:
        for path in sorted((root / directory).glob("*.nmconnection")):
            found.append((str(path), read_sections(path)))
    return found


def _interface(sections: Sections, name_of_mac: Callable[[str], str]) -> str:
    name = value(sections, "connection", "interface-name")
    mac = value(sections, "ethernet", "mac-address").lower()
    return name or (name_of_mac(mac) if mac else "")


def _controller(sections: Sections) -> str:
    return value(sections, "connection", "controller") or value(sections, "connection", "master")


def _link(where: str, sections: Sections, name: str,
          connections: list[tuple[str, Sections, str]]) -> HostLink:  # fmt: skip
    link = HostLink(name, where, _addressing(sections, where, 4), _addressing(sections, where, 6))
    kind = value(sections, "connection", "type")
    own = {name, value(sections, "connection", "id"), value(sections, "connection", "uuid")} - {""}
    ports = tuple(port for _, other, port in connections if port and _controller(other) in own)
    if kind == "vlan":
        vlan_id = value(sections, "vlan", "id", "0")
        return replace(link, vlan=int(vlan_id) if vlan_id.isdigit() else 0,
                       parent=value(sections, "vlan", "parent"))  # fmt: skip
    if kind == "bridge":
        return replace(link, bridge=True, ports=ports)
    if kind == "bond":
        return bonded(link, value(sections, "bond", "mode", "balance-rr"), ports, "[bond] mode")
    return link


def read_keyfiles(root: Path, name_of_mac: Callable[[str], str]) -> dict[str, HostLink]:
    """Every interface a keyfile configures under `root`, by name (`name_of_mac` names the
    interface of a connection bound by MAC address only)."""
    connections = [(where, sections, _interface(sections, name_of_mac))
                   for where, sections in _connections(root)]  # fmt: skip
    links: dict[str, HostLink] = {}
    for where, sections, name in connections:
        if name and name not in links:
            links[name] = _link(where, sections, name, connections)
    return links
