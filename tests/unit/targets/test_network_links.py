"""The network keys of nfs and ssh (issue 22, item 3): interfaces by MAC, bonds, VLANs,
static IPv4 and IPv6 addresses and routes, SLAAC; each bad value refused in one line
naming the recipe and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.recipe.parse import parse_recipe
from builder.targets import network
from builder.targets.netlinks import BondMode, BridgeMode
from builder.targets.network import NetworkOptions

NFS = '[source]\nroot = "/"\n[dump]\ntarget = "nfs"\nnfs = "10.0.2.2:/srv"\n'


def _options(extra: str, head: str = NFS) -> NetworkOptions:
    recipe = parse_recipe(head + extra, Path("r.toml"))
    options = recipe.dump.options.network  # type: ignore[attr-defined]
    assert isinstance(options, NetworkOptions)
    return options


def test_a_bond_with_a_vlan_and_static_ipv6() -> None:
    options = _options(
        'interface = "bond0"\nbond = "802.3ad"\nbond_ports = ["52:54:00:AA:00:01", '
        '"52:54:00:aa:00:02"]\nvlan = 42\nnetwork = "static"\nip = "fd00::15/64"\n'
        'gateway = "fd00::1"\nroutes = ["10.9.0.0/16 via 10.0.2.1", "fd09::/64"]\n'
    )
    assert (options.bond, options.link) == (BondMode.LACP, "bond0.42")
    assert network.network_modules(options) == ("bonding", "8021q")
    config = network.network_config(options)
    assert {key: config[key] for key in ("KDUMP_BOND", "KDUMP_BOND_PORTS", "KDUMP_VLAN",
                                         "KDUMP_ROUTES", "KDUMP_IP", "KDUMP_GATEWAY")} == {
        "KDUMP_BOND": "802.3ad", "KDUMP_BOND_PORTS": "52:54:00:aa:00:01 52:54:00:aa:00:02",
        "KDUMP_VLAN": "42", "KDUMP_ROUTES": "10.9.0.0/16 via 10.0.2.1,fd09::/64",
        "KDUMP_IP": "fd00::15/64", "KDUMP_GATEWAY": "fd00::1",
    }  # fmt: skip


def test_the_plain_link_needs_no_module() -> None:
    options = _options('interface_mac = "52:54:00:12:34:56"\nnetwork = "slaac"\n')
    assert network.network_modules(options) == ()
    config = network.network_config(options)
    assert (config["KDUMP_INTERFACE_MAC"], config["KDUMP_NETWORK"], config["KDUMP_BOND"]) == (
        "52:54:00:12:34:56", "slaac", "")  # fmt: skip


def test_a_bridge_of_two_ports_with_its_mac() -> None:
    options = _options(
        'interface = "br0"\nbridge = "port-with-carrier"\nbridge_ports = ["52:54:00:AA:00:01", '
        '"52:54:00:aa:00:02"]\nbridge_mac = "52:54:00:AA:00:B0"\nvlan = 7\n'
    )
    assert (options.bridge, options.bridge_mac) == (BridgeMode.PORT_WITH_CARRIER,
                                                     "52:54:00:aa:00:b0")  # fmt: skip
    # Both ports' drivers go in the initrd; no bridge module (the capture makes none).
    assert options.macs == ("52:54:00:aa:00:01", "52:54:00:aa:00:02")
    assert network.network_modules(options) == ("8021q",)
    config = network.network_config(options)
    assert {key: config[key] for key in ("KDUMP_BRIDGE", "KDUMP_BRIDGE_PORTS",
                                         "KDUMP_BRIDGE_MAC", "KDUMP_BOND")} == {
        "KDUMP_BRIDGE": "port-with-carrier", "KDUMP_BRIDGE_PORTS": "52:54:00:aa:00:01 "
        "52:54:00:aa:00:02", "KDUMP_BRIDGE_MAC": "52:54:00:aa:00:b0", "KDUMP_BOND": "",
    }  # fmt: skip
    assert network.network_config(_options(""))["KDUMP_BRIDGE"] == ""


def test_dhcpv6_brings_its_script_and_needs_udhcpc6() -> None:
    options = _options('network = "dhcpv6"\n')
    generated = network.network_files(options)
    assert [(item.path, item.mode) for item in generated] == [("/etc/kdump/udhcpc6.script", 0o755)]
    assert network.network_applets(options) == (("udhcpc6", "dump.network"),)
    assert network.network_config(options)["KDUMP_NETWORK"] == "dhcpv6"
    # The other modes run no applet the shell's busybox may lack.
    assert network.network_applets(_options('network = "slaac"\n')) == ()
    assert [item.path for item in network.network_files(_options(""))] == [
        "/etc/kdump/udhcpc.script"
    ]


def test_an_ipv6_nfs_server() -> None:
    recipe = parse_recipe(
        '[source]\nroot = "/"\n[dump]\ntarget = "nfs"\nnfs = "[fec0::2]:/kdump"\n', Path("r.toml")
    )
    assert recipe.dump.target.config(recipe.dump)["KDUMP_NFS_OPTIONS"] == (
        "vers=4.2,addr=fec0::2,proto=tcp6"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('interface_mac = "52-54-00-12-34-56"\n',
         "dump.interface_mac: '52-54-00-12-34-56' is not a MAC address (aa:bb:cc:dd:ee:ff)"),
        ('bond = "active-backup"\n', "dump.bond_ports: required with dump.bond = 'active-backup'"),
        ('bond_ports = ["52:54:00:00:00:01"]\n', "dump.bond_ports: only used with dump.bond"),
        ('bond = "balance-rr"\nbond_ports = ["52:54:00:00:00:01"]\n', "dump.bond: "),
        ('bond = "active-backup"\nbond_ports = ["52:54:00:00:00:01", "52:54:00:00:00:01"]\n',
         "dump.bond_ports: item 1: '52:54:00:00:00:01' is a second time"),
        ('bond = "active-backup"\nbond_ports = ["eth0"]\n',
         "dump.bond_ports: item 0: 'eth0' is not a MAC address"),
        ('bond = "active-backup"\nbond_ports = ["52:54:00:00:00:01"]\n'
         'interface_mac = "52:54:00:00:00:02"\n',
         "dump.interface_mac: a bond is named by its ports (dump.bond_ports)"),
        ("vlan = 4095\n", "dump.vlan: "),
        ('interface = "enp0s31f6abcd"\nvlan = 4094\n',
         "dump.vlan: 'enp0s31f6abcd.4094' is longer than an interface name may be"),
        ('network = "static"\nip = "fd00::15"\n', "dump.ip: 'fd00::15' needs a /prefix"),
        ('network = "static"\nip = "fd00::15/129"\n',
         "dump.ip: 'fd00::15/129' is not an IPv4 or IPv6 address/prefix"),
        ('network = "static"\nip = "10.0.2.15/24"\ngateway = "fd00::1"\n',
         "dump.gateway: 'fd00::1' is not of dump.ip's family"),
        ('network = "slaac"\nip = "fd00::15/64"\n',
         "dump.ip: only used when dump.network is static"),
        ('network = "dhcpv6"\ngateway = "fd00::1"\n',
         "dump.gateway: only used when dump.network is static"),
        ('routes = ["10.9.0.0/16 via fd00::1"]\n',
         "dump.routes: item 0: '10.9.0.0/16 via fd00::1': the gateway is not of the "
         "destination family"),
        ('routes = ["10.9.0.0/16; reboot"]\n',
         "dump.routes: item 0: '10.9.0.0/16; reboot': is not `<network>/<prefix> [via <gateway>]`"),
        ('routes = ["10.9.0.1/16"]\n',
         "dump.routes: item 0: '10.9.0.1/16': 10.9.0.1/16 has host bits set"),
        ('routes = ["default"]\n',
         "dump.routes: item 0: 'default': a default route needs via <gateway>"),
        ('network = "dhcp6"\n', "dump.network: "),
        ('bridge = "stp"\n', "dump.bridge: "),
        ('bridge = "port-with-carrier"\n',
         "dump.bridge_ports: required with dump.bridge = 'port-with-carrier'"),
        ('bridge_ports = ["52:54:00:00:00:01"]\n', "dump.bridge_ports: only used with dump.bridge"),
        ('bridge_mac = "52:54:00:00:00:01"\n', "dump.bridge_mac: only used with dump.bridge"),
        ('bridge = "port-with-carrier"\nbridge_ports = ["52:54:00:00:00:01"]\n'
         'bridge_mac = "br0"\n', "dump.bridge_mac: 'br0' is not a MAC address"),
        ('bridge = "port-with-carrier"\nbridge_ports = ["52:54:00:00:00:01", "eth1"]\n',
         "dump.bridge_ports: item 1: 'eth1' is not a MAC address"),
        ('bridge = "port-with-carrier"\nbridge_ports = ["52:54:00:00:00:01"]\n'
         'interface_mac = "52:54:00:00:00:01"\n',
         "dump.interface_mac: a bridge is named by its ports (dump.bridge_ports)"),
        ('bridge = "port-with-carrier"\nbridge_ports = ["52:54:00:00:00:01"]\n'
         'bond = "active-backup"\nbond_ports = ["52:54:00:00:00:02"]\n',
         "dump.bridge: a bridge's ports are plain interfaces, not dump.bond"),
    ],
)  # fmt: skip
def test_bad_network_values_are_refused_in_one_line(extra: str, message: str) -> None:
    with pytest.raises(RecipeError) as raised:
        _options(extra)
    text = str(raised.value)
    assert "\n" not in text and text.startswith("r.toml: ")
    assert message in text


@pytest.mark.parametrize(
    ("nfs", "message"),
    [
        ("fec0::2:/srv", "dump.nfs: 'fec0::2:/srv' is not <IPv4 address>:/<export> or "
         "[<IPv6 address>]:/<export>"),
        ("[10.0.2.2]:/srv", "is not <IPv4 address>"),
        ("[fec0::2%eth0]:/srv", "is not <IPv4 address>"),
    ],
)  # fmt: skip
def test_bad_nfs_servers_are_refused(nfs: str, message: str) -> None:
    with pytest.raises(RecipeError) as raised:
        parse_recipe(f'[dump]\ntarget = "nfs"\nnfs = "{nfs}"\n', Path("r.toml"))
    assert message in str(raised.value)
