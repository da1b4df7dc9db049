"""What a host network reader answers: the link that reaches the dump server, as the
host configures it, and the recipe keys that bring the same link up in the capture.

Each reader (ifupdown, systemd-networkd, NetworkManager keyfiles) turns its own files
into `HostLink`s by interface name; `resolve` follows VLANs, bonds and bridges down to
the interfaces the capture finds by MAC address (a bridge of several ports becomes
`dump.bridge`: the address on the port with carrier, with the bridge's MAC).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from builder.errors import HostError
from builder.recipe.text import toml_list, toml_string
from builder.targets.netlinks import BondMode, BridgeMode
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
    `ports` too (the capture makes no bridge: the address goes on one port)."""

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
    bridge: BridgeMode = BridgeMode.NONE
    bridge_ports: tuple[str, ...] = ()
    bridge_mac: str = ""

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
        if self.bridge is not BridgeMode.NONE:
            lines += [f"bridge = {toml_string(self.bridge.value)}",
                      f"bridge_ports = {toml_list(self.bridge_ports, 'dump.bridge_ports')}",
                      f"bridge_mac = {toml_string(self.bridge_mac)}"]  # fmt: skip
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
            ports = _bridge_ports(links, link, mac_of)
            return CaptureLink(addressing, link.name, vlan=vlan, sources=tuple(sources),
                               bridge=BridgeMode.PORT_WITH_CARRIER, bridge_ports=ports,
                               bridge_mac=mac_of(link.name))  # fmt: skip
        link = links.get(link.ports[0]) or HostLink(link.ports[0], link.where)
    if link.bond is not BondMode.NONE:
        ports = tuple(mac_of(port) for port in link.ports)
        return CaptureLink(addressing, link.name, bond=link.bond, bond_ports=ports, vlan=vlan,
                           sources=tuple(sources))  # fmt: skip
    return CaptureLink(addressing, link.name, mac_of(link.name), vlan=vlan, sources=tuple(sources))


def _bridge_ports(
    links: Mapping[str, HostLink], bridge: HostLink, mac_of: Callable[[str], str]
) -> tuple[str, ...]:
    """The MAC addresses of a bridge's ports, which must be plain interfaces: the capture
    puts its address on one of them (a bond or VLAN port would need its own set-up
    first)."""
    if not bridge.ports:
        raise HostError(f"{bridge.where}: bridge {bridge.name} has no ports: the capture has "
                        "no interface to put its address on")  # fmt: skip
    for port in bridge.ports:
        found = links.get(port, HostLink(port, bridge.where))
        kind = ("bond" if found.bond is not BondMode.NONE else "bridge" if found.bridge
                else "VLAN" if found.vlan else "")  # fmt: skip
        if kind:
            raise HostError(f"{bridge.where}: bridge {bridge.name}: port {port} is a {kind}; "
                            "the capture puts the address of a bridge of several ports on "
                            "one plain interface")  # fmt: skip
    return tuple(mac_of(port) for port in bridge.ports)


def _find(links: Mapping[str, HostLink], name: str, asked: str) -> HostLink:
    if name not in links:
        raise HostError(f"no configuration for {name} (the link to the dump server, {asked}) "
                        "in ifupdown, systemd-networkd or NetworkManager files")  # fmt: skip
    return links[name]
