"""ifupdown's /etc/network/interfaces (with its `source` and `source-directory` files),
read into `HostLink`s: `inet`/`inet6` stanzas with dhcp (DHCPv6 for inet6), static or
auto (SLAAC), `bond-mode`/`bond-slaves`, VLANs (`eth0.42`, or `vlan-raw-device`),
`bridge_ports`, and the routes of `up ip route add ...` lines (interfaces(5),
ifupdown-extra's bonding, vlan and bridge-utils option names)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder.errors import HostError
from builder.host.netconfig.model import Addressing, HostLink, bonded, prefix_of
from builder.targets.netlinks import BondMode
from builder.targets.network import NetworkMode

STANZAS = ("iface", "auto", "mapping", "source", "source-directory", "rename")
# run-parts' names: what source-directory reads.
PART_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
ROUTE_UP = re.compile(r"^(?:ip(?: -6)? route add|route add -net) (\S+)(?: via| gw) (\S+)")


@dataclass
class _Stanza:
    name: str
    family: str
    method: str
    where: str
    options: dict[str, str] = field(default_factory=dict)
    routes: list[str] = field(default_factory=list)


def _lines(path: Path, root: Path, seen: set[Path]) -> list[tuple[str, str]]:
    """(where, line) of a file and the files it sources, in order."""
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    found: list[tuple[str, str]] = []
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        # Relative paths are relative to the file that names them (interfaces(5)).
        here = path.parent if len(words) < 2 or not words[1].startswith("/") else root
        if words[0] == "source" and len(words) > 1:
            base = here / words[1].lstrip("/")
            for included in sorted(base.parent.glob(base.name)):
                found += _lines(included, root, seen)
        elif words[0] == "source-directory" and len(words) > 1:
            directory = here / words[1].lstrip("/")
            for included in sorted(directory.glob("*")):
                if PART_NAME.fullmatch(included.name):
                    found += _lines(included, root, seen)
        else:
            found.append((f"{path}:{number}", line))
    return found


def _stanzas(root: Path) -> list[_Stanza]:
    stanzas: list[_Stanza] = []
    current: _Stanza | None = None
    for where, line in _lines(root / "etc/network/interfaces", root, set()):
        words = line.split()
        if words[0].startswith("allow-") or words[0] in STANZAS:
            current = None
            if words[0] == "iface" and len(words) >= 4:
                current = _Stanza(words[1], words[2], words[3], where)
                stanzas.append(current)
            continue
        if current is None:
            continue
        key, _, value = line.partition(" ")
        if key in ("up", "post-up") and (route := ROUTE_UP.match(value.strip())):
            current.routes.append(f"{route.group(1)} via {route.group(2)}")
        current.options[key.replace("_", "-")] = value.strip()
    return stanzas


def _addressing(stanza: _Stanza) -> Addressing | str:
    method, options = stanza.method, stanza.options
    if stanza.family == "inet" and method == "dhcp":
        return Addressing(NetworkMode.DHCP, routes=tuple(stanza.routes))
    if stanza.family == "inet6" and method == "auto":
        return Addressing(NetworkMode.SLAAC, routes=tuple(stanza.routes))
    if stanza.family == "inet6" and method == "dhcp":
        return Addressing(NetworkMode.DHCPV6, routes=tuple(stanza.routes))
    if method == "static":
        address = options.get("address", "")
        if address and "/" not in address:
            prefix = options.get("netmask", "")
            length = prefix if prefix.isdigit() else prefix_of(prefix)
            if length is None or not prefix:
                raise HostError(f"{stanza.where}: netmask: {prefix!r} is not a netmask")
            address = f"{address}/{length}"
        if not address:
            raise HostError(f"{stanza.where}: iface {stanza.name}: static without an address")
        return Addressing(NetworkMode.STATIC, address, options.get("gateway", ""),
                          tuple(stanza.routes))  # fmt: skip
    return (f"{stanza.where}: iface {stanza.name} {stanza.family} {method}: the capture does "
            "dhcp (IPv4 and DHCPv6), static and auto (SLAAC) only")  # fmt: skip


def _link(name: str, stanzas: list[_Stanza]) -> HostLink:
    link = HostLink(name, stanzas[0].where)
    for stanza in stanzas:
        if stanza.method in ("manual", "loopback"):
            continue
        if stanza.family == "inet":
            link = replace(link, where=stanza.where, ipv4=_addressing(stanza))
        elif stanza.family == "inet6":
            link = replace(link, where=stanza.where, ipv6=_addressing(stanza))
    options = {key: value for stanza in stanzas for key, value in stanza.options.items()}
    return _links_of(link, options)


def _links_of(link: HostLink, options: dict[str, str]) -> HostLink:
    """The VLAN, bond and bridge options of a stanza."""
    if "bond-slaves" in options or "bond-mode" in options:
        ports = tuple(options.get("bond-slaves", "").split())
        link = bonded(link, options.get("bond-mode", "balance-rr"), ports, "bond-mode")
    if "bridge-ports" in options:
        ports = tuple(port for port in options["bridge-ports"].split() if port != "none")
        link = replace(link, bridge=True, ports=ports)
    raw_device = options.get("vlan-raw-device", "")
    base, dot, vid = link.name.rpartition(".")
    if raw_device or (dot and vid.isdigit()):
        number = re.search(r"(\d+)$", link.name)
        vlan = int(vid) if dot and vid.isdigit() else int(number.group(1)) if number else 0
        if not 1 <= vlan <= 4094:
            raise HostError(f"{link.where}: iface {link.name}: no VLAN id in its name")
        link = replace(link, vlan=vlan, parent=raw_device or base)
    return link


def read_ifupdown(root: Path) -> dict[str, HostLink]:
    """Every interface /etc/network/interfaces configures under `root`, by name."""
    by_name: dict[str, list[_Stanza]] = {}
    for stanza in _stanzas(root):
        by_name.setdefault(stanza.name, []).append(stanza)
    links = {name: _link(name, stanzas) for name, stanzas in by_name.items()}
    if any(link.bond is not BondMode.NONE and not link.ports for link in links.values()):
        _ports_from_members(links, by_name)
    return links


def _ports_from_members(links: dict[str, HostLink], by_name: dict[str, list[_Stanza]]) -> None:
    """Ports that name their bond (`bond-master bond0`) instead of the bond its ports."""
    for name, link in links.items():
        if link.bond is BondMode.NONE or link.ports:
            continue
        members = tuple(other for other, stanzas in by_name.items()
                        if any(s.options.get("bond-master") == name for s in stanzas))  # fmt: skip
        links[name] = replace(link, ports=members)
