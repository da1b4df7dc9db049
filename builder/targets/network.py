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

from builder.errors import HostError
from builder.recipe.dump import EnableRequest, GeneratedFile, TargetOptions
from builder.recipe.parsers import Check, Setting, choice, integer, string, string_list
from builder.targets import netlinks
from builder.targets.netlinks import BondMode, BridgeMode

IPV4 = re.compile(
    r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
)
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
INTERFACE_NAME = netlinks.INTERFACE_NAME
# Where /init finds the script busybox udhcpc runs to apply a lease.
UDHCPC_SCRIPT_PATH = "/etc/kdump/udhcpc.script"
# And the one udhcpc6 runs to apply a DHCPv6 lease (an IA_NA address).
UDHCPC6_SCRIPT_PATH = "/etc/kdump/udhcpc6.script"
# The busybox applet the dhcpv6 mode runs: busybox 1.35 (Debian 12) has none, 1.37
# (Debian 13) and later have it.
DHCPV6_APPLET = "udhcpc6"
# How long DHCP may take at most: init.sh runs udhcpc -t 10 -T 2 (ten discovers, 2 s apart).
DHCP_SECONDS = 20
DEFAULT_CONNECT_TIMEOUT = 60


class NetworkMode(StrEnum):
    """How the capture kernel configures its interface."""

    DHCP = "dhcp"
    STATIC = "static"
    # IPv6 stateless autoconfiguration: the kernel alone, from the router's advertisements.
    SLAAC = "slaac"
    # Stateful DHCPv6: an IA_NA address from busybox udhcpc6; routes from the router's
    # advertisements (DHCPv6 carries none) or dump.routes.
    DHCPV6 = "dhcpv6"


SETTINGS = (
    Setting(
        "dump.network",
        choice(NetworkMode),
        NetworkMode.DHCP,
        "How the capture kernel configures its link: `dhcp` (IPv4, busybox udhcpc), "
        "`static` (dump.ip and dump.gateway, IPv4 or IPv6), `slaac` (IPv6 addresses "
        "from the router's advertisements, by the kernel alone) or `dhcpv6` (a stateful "
        "DHCPv6 address, as a /128, from busybox udhcpc6: busybox 1.37 and later, i.e. "
        "Debian 13's busybox-static with source.release = `trixie` and initrd.busybox = "
        "`/usr/bin/busybox`, as recipes/qemu-x86_64-trixie.toml; routes from the router's "
        "advertisements or dump.routes). The network driver goes in initrd.modules.",
    ),
    Setting(
        "dump.interface",
        string,
        "eth0",
        "Network interface to bring up; with dump.bond, the name of the bond the capture "
        "creates (e.g. `bond0`); with dump.bridge, the host's bridge (named in the log).",
    ),
    Setting(
        "dump.interface_mac",
        string,
        "",
        "The MAC address of dump.interface (e.g. `52:54:00:12:34:56`): the capture finds "
        "the interface by it, whatever the capture kernel names it. Empty: by name.",
    ),
    Setting(
        "dump.bond",
        choice(BondMode),
        BondMode.NONE,
        "Bond dump.bond_ports into dump.interface with the kernel's bonding driver "
        "(`active-backup` or `802.3ad`; link checks every 100 ms).",
    ),
    Setting(
        "dump.bond_ports",
        string_list(),
        (),
        "With dump.bond: the MAC addresses of the bond's ports, the first one primary.",
    ),
    Setting(
        "dump.bridge",
        choice(BridgeMode),
        BridgeMode.NONE,
        "The host's bridge of dump.bridge_ports: `port-with-carrier` puts the address on "
        "the first of them, in order, whose link has carrier within dump.connect_timeout, "
        "with the bridge's MAC address (dump.bridge_mac). No bridge is made: no loop "
        "between the ports, no STP delay, no module.",
    ),
    Setting(
        "dump.bridge_ports",
        string_list(),
        (),
        "With dump.bridge: the MAC addresses of the bridge's ports, in the order tried.",
    ),
    Setting(
        "dump.bridge_mac",
        string,
        "",
        "With dump.bridge: the bridge's MAC address, which the chosen port takes (the one "
        "the switch, DHCP server and neighbours know); empty: the port keeps its own.",
    ),
    Setting(
        "dump.vlan",
        integer(0, 4094),
        0,
        "A VLAN id: the capture's address goes on `<interface>.<vlan>` (802.1Q on "
        "dump.interface, the bond or the bridge's chosen port); 0: no VLAN.",
    ),
    Setting(
        "dump.ip",
        string,
        "",
        "With static network: address and prefix, IPv4 or IPv6 (`10.0.2.15/24`, `fd00::15/64`).",
    ),
    Setting(
        "dump.gateway",
        string,
        "",
        "With static network: default gateway address, of dump.ip's family (optional).",
    ),
    Setting(
        "dump.routes",
        string_list(),
        (),
        "More routes on the link, each `<network>/<prefix>` or `<network>/<prefix> via "
        "<gateway>` (IPv4 or IPv6), added after the address.",
    ),
    Setting(
        "dump.connect_timeout",
        integer(1, 3600),
        DEFAULT_CONNECT_TIMEOUT,
        "Seconds the capture kernel waits for each network step (each port of a bond, a "
        "bridge port with carrier, the router's advertisement with slaac, the DHCPv6 lease "
        "and then the router's routes with dhcpv6; the NFS mount; each short ssh command "
        "before and after the transfer) before failure_action; an unreachable server ends "
        "the capture within dump.device_timeout + 20 + this many seconds (dhcpv6: twice "
        "this many more; dump.bridge: this many more, the wait for carrier).",
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
    interface_mac: str = ""
    bond: BondMode = BondMode.NONE
    bond_ports: tuple[str, ...] = ()
    vlan: int = 0
    routes: tuple[str, ...] = ()
    bridge: BridgeMode = BridgeMode.NONE
    bridge_ports: tuple[str, ...] = ()
    bridge_mac: str = ""

    @property
    def link(self) -> str:
        """The interface that carries the address in the capture."""
        return netlinks.vlan_name(self.interface, self.vlan) if self.vlan else self.interface

    @property
    def macs(self) -> tuple[str, ...]:
        """The MAC addresses of the network cards the link uses (a bond's or a bridge's
        ports, or the one interface named by dump.interface_mac); empty when the recipe
        names it by name."""
        ports = self.bond_ports or self.bridge_ports
        return ports or ((self.interface_mac,) if self.interface_mac else ())


def network_options(values: Mapping[str, Any], check: Check) -> NetworkOptions:
    """Check the network keys among a target's parsed `values`."""
    options = NetworkOptions(
        values["network"], values["interface"], values["ip"], values["gateway"],
        values["hostname"], values["connect_timeout"],
        _mac(values["interface_mac"], "dump.interface_mac", check), values["bond"],
        _ports(values, "bond", check), values["vlan"], values["routes"], values["bridge"],
        _ports(values, "bridge", check), _bridge_mac(values, check),
    )  # fmt: skip
    if not INTERFACE_NAME.fullmatch(options.interface):
        check.fail("dump.interface", f"{options.interface!r} is not an interface name")
    if options.vlan and not INTERFACE_NAME.fullmatch(options.link):
        check.fail("dump.vlan", f"{options.link!r} is longer than an interface name may be")
    _check_addresses(options, check)
    for index, route in enumerate(options.routes):
        problem = netlinks.route_problem(route)
        if problem is not None:
            check.fail("dump.routes", f"item {index}: {route!r}: {problem}")
    if options.hostname and not HOST_NAME.fullmatch(options.hostname):
        check.fail("dump.hostname", f"{options.hostname!r} is not a host name")
    return options


def _mac(value: str, key: str, check: Check) -> str:
    if not value:
        return ""
    mac = netlinks.mac_address(value)
    if mac is None:
        check.fail(key, f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return mac


def _ports(values: Mapping[str, Any], kind: str, check: Check) -> tuple[str, ...]:
    """The MAC addresses of dump.bond_ports or dump.bridge_ports (`kind`), checked."""
    ports: tuple[str, ...] = values[f"{kind}_ports"]
    key = f"dump.{kind}_ports"
    if values[kind] in (BondMode.NONE, BridgeMode.NONE):
        if ports:
            check.fail(key, f"only used with dump.{kind}")
        return ()
    if not ports:
        check.fail(key, f"required with dump.{kind} = {values[kind].value!r}")
    if values["interface_mac"]:
        check.fail("dump.interface_mac", f"a {kind} is named by its ports ({key})")
    if kind == "bridge" and values["bond"] is not BondMode.NONE:
        check.fail("dump.bridge", "a bridge's ports are plain interfaces, not dump.bond")
    found: list[str] = []
    for index, port in enumerate(ports):
        mac = netlinks.mac_address(port)
        if mac is None or mac in found:
            what = "a second time" if mac else "not a MAC address (aa:bb:cc:dd:ee:ff)"
            check.fail(key, f"item {index}: {port!r} is {what}")
        found.append(mac)
    return tuple(found)


def _bridge_mac(values: Mapping[str, Any], check: Check) -> str:
    if values["bridge_mac"] and values["bridge"] is BridgeMode.NONE:
        check.fail("dump.bridge_mac", "only used with dump.bridge")
    return _mac(values["bridge_mac"], "dump.bridge_mac", check)


def _check_addresses(options: NetworkOptions, check: Check) -> None:
    if options.network is not NetworkMode.STATIC:
        for key in ("dump.ip", "dump.gateway"):
            if key in check.given:
                check.fail(key, "only used when dump.network is static")
        return
    problem = netlinks.interface_address(options.ip)
    if problem is not None:
        check.fail("dump.ip", f"{options.ip!r} {problem}")
    if options.gateway:
        gateway = netlinks.address(options.gateway)
        if gateway is None:
            check.fail("dump.gateway", f"{options.gateway!r} is not an IPv4 or IPv6 address")
        family = netlinks.address(options.ip.partition("/")[0])
        if family is not None and gateway.version != family.version:
            check.fail("dump.gateway", f"{options.gateway!r} is not of dump.ip's family")


def network_modules(options: NetworkOptions) -> tuple[str, ...]:
    """The kernel modules the capture's links need (bonding, 802.1Q VLANs)."""
    bond = (netlinks.BOND_MODULE,) if options.bond is not BondMode.NONE else ()
    return (*bond, *((netlinks.VLAN_MODULE,) if options.vlan else ()))


def network_files(options: NetworkOptions) -> tuple[GeneratedFile, ...]:
    """The DHCP (or DHCPv6) script, when the network comes from DHCP (or DHCPv6)."""
    scripts = {NetworkMode.DHCP: ("udhcpc.sh", UDHCPC_SCRIPT_PATH),
               NetworkMode.DHCPV6: ("udhcpc6.sh", UDHCPC6_SCRIPT_PATH)}  # fmt: skip
    if options.network not in scripts:
        return ()
    name, path = scripts[options.network]
    return (GeneratedFile(path, (files("builder.targets") / name).read_bytes(), 0o755),)


def network_applets(options: NetworkOptions) -> tuple[tuple[str, str], ...]:
    """The busybox applets the network needs beyond the shell's, as (applet, the recipe
    key that asks for it): udhcpc6 for dhcpv6."""
    if options.network is NetworkMode.DHCPV6:
        return ((DHCPV6_APPLET, "dump.network"),)
    return ()


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
        "KDUMP_UDHCPC6_SCRIPT": UDHCPC6_SCRIPT_PATH,
        "KDUMP_INTERFACE_MAC": options.interface_mac,
        "KDUMP_BOND": options.bond.value if options.bond is not BondMode.NONE else "",
        "KDUMP_BOND_PORTS": " ".join(options.bond_ports),
        "KDUMP_VLAN": str(options.vlan) if options.vlan else "",
        "KDUMP_BRIDGE": options.bridge.value if options.bridge is not BridgeMode.NONE else "",
        "KDUMP_BRIDGE_PORTS": " ".join(options.bridge_ports),
        "KDUMP_BRIDGE_MAC": options.bridge_mac,
        # One route per comma (their words are checked: no comma, nothing the shell reads).
        "KDUMP_ROUTES": ",".join(options.routes),
    }


def shell_part() -> bytes:
    """`network_up`, the shell function that brings the network up: the first piece of
    every network target's shell part."""
    return (files("builder.targets") / "network.sh").read_bytes()


def enable_path(request: EnableRequest, default: str) -> str:
    """dump.path as `enable --path` gives it (`default` without), checked: a network
    target's `enable_keys` writes it."""
    chosen = request.path if request.path is not None else default
    if not chosen.startswith("/"):
        raise HostError(f"--path: {chosen!r} is not an absolute path (the directory on the "
                        "server the dumps go below)")  # fmt: skip
    return chosen
