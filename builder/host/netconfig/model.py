"""What a host network reader answers: the link that reaches the dump server, as the
host configures it, and the recipe keys that bring the same link up in the capture.

Each reader (ifupdown, systemd-networkd, NetworkManager keyfiles) turns its own files
into `HostLink`s by interface name; `resolve` follows VLANs, bonds and single-port
bridges down to the interfaces the capture finds by MAC address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from builder.errors import HostError
from builder.recipe.text import toml_list, toml_string
from builder.targets.netlinks import BondMode
from builder.targets.network import NetworkMode

# The bonding driver's numeric modes, as configuration files may write them.
BOND_MODES = {"active-backup": BondMode.ACTIVE_BACKUP, "1": BondMode.ACTIVE_BACKUP,
              "802.3ad": BondMode.LACP, "4": BondMode.LACP}  # fmt: skip


@dataclass(frozen=True)
class Addressing:
    """How one interface gets its address for one IP family."""

    mode: NetworkMode
    ip: str = ""
    gateway: str = ""
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostLink:
    """One interface as a configuration file describes it; `where` names the file (and
    section) for errors. A VLAN names its `parent`, a bond its `ports`, a bridge its
    `ports` too (the capture needs no bridge: the address goes on the one port)."""

    name: str
    where: str
    # A string: why the capture cannot configure that family as the host does (a refusal
    # only when the dump server is of that family).
    ipv4: Addressing | str | None = None
    ipv6: Addressing | str | None = None
    vlan: int = 0
    parent: str = ""
    bond: BondMode = BondMode.NONE
    ports: tuple[str, ...] = ()
    bridge: bool = False


@dataclass(frozen=True)
class CaptureLink:
    """The recipe's network keys for the link to the dump server."""

    addressing: Addressing
    interface: str
    interface_mac: str = ""
    bond: BondMode = BondMode.NONE
    bond_ports: tuple[str, ...] = ()
    vlan: int = 0
    sources: tuple[str, ...] = field(default=())

    def recipe_lines(self) -> str:
        """The `[dump]` keys, as TOML lines.

        >>> link = CaptureLink(Addressing(NetworkMode.DHCP), "eth0", "52:54:00:12:34:56")
        >>> print(link.recipe_lines(), end="")
        network = "dhcp"
        interface = "eth0"
        interface_mac = "52:54:00:12:34:56"
        """
        lines = [f"network = {toml_string(self.addressing.mode.value)}",
                 f"interface = {toml_string(self.interface)}"]  # fmt: skip
        if self.interface_mac:
            lines.append(f"interface_mac = {toml_string(self.interface_mac)}")
        if self.bond is not BondMode.NONE:
            lines += [f"bond = {toml_string(self.bond.value)}",
                      f"bond_ports = {toml_list(self.bond_ports, 'dump.bond_ports')}"]  # fmt: skip
        if self.vlan:
            lines.append(f"vlan = {self.vlan}")
        if self.addressing.ip:
            lines.append(f"ip = {toml_string(self.addressing.ip)}")
        if self.addressing.gateway:
            lines.append(f"gateway = {toml_string(self.addressing.gateway)}")
        if self.addressing.routes:
            lines.append(f"routes = {toml_list(self.addressing.routes, 'dump.routes')}")
        return "".join(f"{line}\n" for line in lines)


def bonded(link: HostLink, mode: str, ports: tuple[str, ...], key: str) -> HostLink:
    """`link` as a bond of `ports` in `mode` (as the file writes it, under `key`); a
    `HostError` for a mode the capture does not make."""
    if mode not in BOND_MODES:
        raise HostError(f"{link.where}: {key}: {mode!r}: the capture bonds only active-backup "
                        "and 802.3ad")  # fmt: skip
    return replace(link, bond=BOND_MODES[mode], ports=ports)


def prefix_of(netmask: str) -> int | None:
    """The prefix length of a dotted netmask.

    >>> prefix_of("255.255.255.0"), prefix_of("255.0.255.0")
    (24, None)
    """
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    except ValueError:
        return None


def _addressing(link: HostLink, family: int) -> Addressing:
    found = link.ipv4 if family == 4 else link.ipv6
    if isinstance(found, str):
        raise HostError(found)
    if found is None:
        raise HostError(f"{link.where}: {link.name} has no IPv{family} address configured "
                        f"(the dump server is IPv{family})")  # fmt: skip
    return found


def resolve(
    links: Mapping[str, HostLink], name: str, family: int, mac_of: Callable[[str], str]
) -> CaptureLink:
    """The capture's keys for interface `name` (the one `ip route get` names) reaching a
    server of IP `family`; `mac_of` gives an interface's permanent MAC address. A
    `HostError` naming the file when the configuration is one the capture cannot do."""
    link = _find(links, name, name)
    addressing = _addressing(link, family)
    sources = [link.where]
    vlan = 0
    if link.vlan:
        vlan, link = link.vlan, _find(links, link.parent, name)
        sources.append(link.where)
    while link.bridge:
        if len(link.ports) != 1:
            raise HostError(f"{link.where}: bridge {link.name} has {len(link.ports)} ports; "
                            "the capture puts its address on one port (name it by "
                            "dump.interface_mac)")  # fmt: skip
        link = links.get(link.ports[0]) or HostLink(link.ports[0], link.where)
    if link.bond is not BondMode.NONE:
        ports = tuple(mac_of(port) for port in link.ports)
        return CaptureLink(addressing, link.name, bond=link.bond, bond_ports=ports, vlan=vlan,
                           sources=tuple(sources))  # fmt: skip
    return CaptureLink(addressing, link.name, mac_of(link.name), vlan=vlan, sources=tuple(sources))


def _find(links: Mapping[str, HostLink], name: str, asked: str) -> HostLink:
    if name not in links:
        raise HostError(f"no configuration for {name} (the link to the dump server, {asked}) "
                        "in ifupdown, systemd-networkd or NetworkManager files")  # fmt: skip
    return links[name]
