"""systemd-networkd's .network and .netdev files, read into `HostLink`s
(systemd.network(5), systemd.netdev(5)): a .network applies to the interfaces its
`[Match] Name=` names; `DHCP=` (yes and ipv6: DHCPv6 too), `Address=`, `Gateway=`,
`IPv6AcceptRA=` and `[Route]` give the addresses; `VLAN=`, `Bond=` and `Bridge=` tie it
to .netdev devices whose `[NetDev] Kind=` is vlan, bond or bridge."""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import Path

from builder.host.netconfig.ini import Sections, read_sections, value, values
from builder.host.netconfig.model import Addressing, HostLink, bonded
from builder.targets.netlinks import address
from builder.targets.network import NetworkMode

# Earlier directories win for a file name (systemd.network(5)).
DIRECTORIES = ("etc/systemd/network", "run/systemd/network", "usr/lib/systemd/network")


def _files(root: Path, suffix: str) -> list[Path]:
    chosen: dict[str, Path] = {}
    for directory in DIRECTORIES:
        for path in sorted((root / directory).glob(f"*{suffix}")):
            chosen.setdefault(path.name, path)
    return [chosen[name] for name in sorted(chosen)]


def _family_addressing(sections: Sections, where: str, family: int) -> Addressing | str | None:
    addresses = [*values(sections, "Network", "Address"), *values(sections, "Address", "Address")]
    gateways = [*values(sections, "Network", "Gateway"), *values(sections, "Route", "Gateway")]
    routes = _routes(sections, family)
    static = [text for text in addresses if (found := address(text.partition("/")[0]))
              and found.version == family]  # fmt: skip
    default_gateway = [text for text in gateways if (found := address(text))
                       and found.version == family]  # fmt: skip
    if static:
        return Addressing(NetworkMode.STATIC, static[0], next(iter(default_gateway), ""), routes)
    dhcp = value(sections, "Network", "DHCP", "no")
    if family == 4 and dhcp in ("yes", "ipv4", "true"):
        return Addressing(NetworkMode.DHCP, routes=routes)
    if family == 6 and value(sections, "Network", "IPv6AcceptRA", "yes") in ("yes", "true"):
        if dhcp in ("yes", "ipv6", "true"):
            return Addressing(NetworkMode.DHCPV6, routes=routes)
        return Addressing(NetworkMode.SLAAC, routes=routes) if not dhcp.startswith("ipv4") else None
    return None


def _routes(sections: Sections, family: int) -> tuple[str, ...]:
    routes = []
    for name, items in sections:
        if name != "Route":
            continue
        found = dict(items)
        destination, gateway = found.get("Destination", ""), found.get("Gateway", "")
        parsed = address(destination.partition("/")[0]) if destination else None
        if parsed is not None and parsed.version == family:
            routes.append(f"{destination} via {gateway}" if gateway else destination)
    return tuple(routes)


def _netdevs(root: Path) -> dict[str, tuple[str, Sections]]:
    found: dict[str, tuple[str, Sections]] = {}
    for path in _files(root, ".netdev"):
        sections = read_sections(path)
        name = value(sections, "NetDev", "Name")
        if name:
            found.setdefault(name, (str(path), sections))
    return found


def _matches(sections: Sections, name: str) -> bool:
    patterns = " ".join(values(sections, "Match", "Name")).split()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _networks(root: Path) -> list[tuple[str, Sections]]:
    return [(str(path), read_sections(path)) for path in _files(root, ".network")]


def _kind(link: HostLink, netdev: tuple[str, Sections] | None,
          networks: list[tuple[str, Sections]], candidates: list[str]) -> HostLink:  # fmt: skip
    if netdev is None:
        return link
    where, sections = netdev
    kind = value(sections, "NetDev", "Kind")
    # Which interfaces each .network applies to (its patterns against the host's names).
    named = [[name for name in candidates if _matches(s, name)] for _, s in networks]
    if kind == "vlan":
        parents = [n for (_, s), names in zip(networks, named, strict=True)
                   if link.name in values(s, "Network", "VLAN") for n in names]  # fmt: skip
        vlan_id = value(sections, "VLAN", "Id", "0")
        return replace(link, vlan=int(vlan_id) if vlan_id.isdigit() else 0,
                       parent=next(iter(parents), ""))  # fmt: skip
    if kind in ("bond", "bridge"):
        key = "Bond" if kind == "bond" else "Bridge"
        ports = tuple(n for (_, s), names in zip(networks, named, strict=True)
                      if value(s, "Network", key) == link.name for n in names)  # fmt: skip
        if kind == "bridge":
            return replace(link, bridge=True, ports=ports)
        return bonded(replace(link, where=where), value(sections, "Bond", "Mode", "balance-rr"),
                      ports, "[Bond] Mode")  # fmt: skip
    return link


def _names(sections: Sections) -> list[str]:
    """The exact interface names a .network matches (no patterns)."""
    names = " ".join(values(sections, "Match", "Name")).split()
    return [name for name in names if not any(char in name for char in "*?[")]


def read_networkd(root: Path, interfaces: tuple[str, ...]) -> dict[str, HostLink]:
    """The configuration networkd applies to each of `interfaces` (the host's names) and to
    its .netdev devices, by name."""
    networks = _networks(root)
    netdevs = _netdevs(root)
    links: dict[str, HostLink] = {}
    candidates = list(dict.fromkeys([*interfaces, *netdevs, *(n for _, s in networks
                                                              for n in _names(s))]))  # fmt: skip
    for name in candidates:
        matched = next(((where, s) for where, s in networks if _matches(s, name)), None)
        if matched is None:
            continue
        where, sections = matched
        link = HostLink(name, where, _family_addressing(sections, where, 4),
                        _family_addressing(sections, where, 6))  # fmt: skip
        links[name] = _kind(link, netdevs.get(name), networks, candidates)
    return links
