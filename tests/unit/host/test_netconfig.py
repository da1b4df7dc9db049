"""The host's network configuration read into recipe keys (issue 22, item 3): ifupdown,
systemd-networkd and NetworkManager keyfiles on synthetic trees (with a /sys/class/net
beside them), each result checked by the recipe parser itself, and what the capture
cannot do refused in one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.netconfig import capture_link, route_device
from builder.recipe.parse import parse_recipe
from builder.targets.network import NetworkOptions

MACS = {"eth0": "52:54:00:00:00:01", "eth1": "52:54:00:00:00:02", "enp1s0": "52:54:00:00:00:03"}
# The host's bridge, with an address of its own (set, or networkd's from the machine id).
BRIDGE_MAC = "52:54:00:00:00:b0"
BRIDGE_KEYS = ('bridge = "port-with-carrier"\nbridge_ports = ["52:54:00:00:00:01", '
               f'"52:54:00:00:00:02"]\nbridge_mac = "{BRIDGE_MAC}"\n')  # fmt: skip


def _tree(root: Path, files: dict[str, str], bonded: tuple[str, ...] = ()) -> Path:
    for name, mac in MACS.items():
        device = root / "sys/class/net" / name
        device.mkdir(parents=True)
        # A bond gives its ports its own address; the permanent one is under bonding_slave.
        (device / "address").write_text("52:54:00:00:00:01\n" if name in bonded else mac + "\n")
        if name in bonded:
            (device / "bonding_slave").mkdir()
            (device / "bonding_slave/perm_hwaddr").write_text(mac + "\n")
    (root / "sys/class/net/br0").mkdir(parents=True)
    (root / "sys/class/net/br0/address").write_text(BRIDGE_MAC + "\n")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _checked(lines: str, server: str = "10.0.2.2") -> NetworkOptions:
    """The keys as a recipe: the recipe's own checks pass them."""
    nfs = f"[{server}]" if ":" in server else server
    text = f'[source]\nroot = "/"\n[dump]\ntarget = "nfs"\nnfs = "{nfs}:/srv"\n{lines}'
    options = parse_recipe(text, Path("r.toml")).dump.options.network  # type: ignore[attr-defined]
    assert isinstance(options, NetworkOptions)
    return options


IFUPDOWN = """\
auto lo
iface lo inet loopback
source-directory interfaces.d
"""
IFUPDOWN_BOND = """\
auto bond0
iface bond0 inet manual
    bond-slaves eth0 eth1
    bond-mode active-backup
    bond-miimon 100

auto bond0.42
iface bond0.42 inet static
    address 192.168.42.5
    netmask 255.255.255.0
    gateway 192.168.42.1
    up ip route add 10.9.0.0/16 via 192.168.42.254   # the backup network
"""


def test_ifupdown_vlan_on_a_bond(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"etc/network/interfaces": IFUPDOWN,
                            "etc/network/interfaces.d/bond": IFUPDOWN_BOND,
                            "etc/network/interfaces.d/ignored.conf": "iface eth9 inet dhcp\n"},
                 bonded=("eth0", "eth1"))  # fmt: skip
    link = capture_link(root, "192.168.42.10", "bond0.42")
    assert link.recipe_lines() == (
        'network = "static"\ninterface = "bond0"\nbond = "active-backup"\n'
        'bond_ports = ["52:54:00:00:00:01", "52:54:00:00:00:02"]\nvlan = 42\n'
        'ip = "192.168.42.5/24"\ngateway = "192.168.42.1"\n'
        'routes = ["10.9.0.0/16 via 192.168.42.254"]\n'
    )
    assert _checked(link.recipe_lines()).link == "bond0.42"


def test_ifupdown_slaac(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"etc/network/interfaces": "iface enp1s0 inet6 auto\n"
                                                      "iface enp1s0 inet dhcp\n"})  # fmt: skip
    six = capture_link(root, "fd00::2", "enp1s0")
    assert six.recipe_lines() == (
        'network = "slaac"\ninterface = "enp1s0"\ninterface_mac = "52:54:00:00:00:03"\n'
    )
    assert _checked(six.recipe_lines(), "fd00::2").interface_mac == MACS["enp1s0"]
    assert capture_link(root, "10.0.2.2", "enp1s0").addressing.mode.value == "dhcp"


IFUPDOWN_BRIDGE = """\
auto br0
iface br0 inet static
    bridge_ports eth0 eth1
    bridge_stp off
    address 192.168.1.5/24
    gateway 192.168.1.1
"""


def test_ifupdown_bridge_of_two_ports(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"etc/network/interfaces": IFUPDOWN_BRIDGE})
    link = capture_link(root, "192.168.1.10", "br0")
    assert link.recipe_lines() == (
        f'network = "static"\ninterface = "br0"\n{BRIDGE_KEYS}'
        'ip = "192.168.1.5/24"\ngateway = "192.168.1.1"\n'
    )
    options = _checked(link.recipe_lines())
    assert options.macs == (MACS["eth0"], MACS["eth1"])  # their drivers go in the initrd
    assert options.bridge_mac == BRIDGE_MAC


def test_ifupdown_bridge_over_a_bond(tmp_path: Path) -> None:
    """A bridge whose one port is a bond: the capture makes the bond."""
    root = _tree(tmp_path, {"etc/network/interfaces": "iface br0 inet dhcp\n"
                            "  bridge_ports bond0\niface bond0 inet manual\n"
                            "  bond-slaves eth0 eth1\n  bond-mode 802.3ad\n"},
                 bonded=("eth0", "eth1"))  # fmt: skip
    assert capture_link(root, "10.0.2.2", "br0").recipe_lines() == (
        'network = "dhcp"\ninterface = "bond0"\nbond = "802.3ad"\n'
        'bond_ports = ["52:54:00:00:00:01", "52:54:00:00:00:02"]\n'
    )


def test_ifupdown_dhcpv6(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"etc/network/interfaces": "iface enp1s0 inet6 dhcp\n"
                            "    up ip -6 route add fd09::/64 via fd00::fe\n"})  # fmt: skip
    six = capture_link(root, "fd00::2", "enp1s0")
    assert six.recipe_lines() == (
        'network = "dhcpv6"\ninterface = "enp1s0"\ninterface_mac = "52:54:00:00:00:03"\n'
        'routes = ["fd09::/64 via fd00::fe"]\n'
    )
    assert _checked(six.recipe_lines(), "fd00::2").routes == ("fd09::/64 via fd00::fe",)


@pytest.mark.parametrize(
    ("interfaces", "device", "message"),
    [
        ("iface bond0 inet dhcp\n  bond-slaves eth0 eth1\n  bond-mode balance-rr\n", "bond0",
         "/etc/network/interfaces:1: bond-mode: 'balance-rr': the capture bonds only "
         "active-backup and 802.3ad"),
        ("iface eth0 inet dhcp\niface eth0 inet6 v4tunnel\n", "eth0",
         "/etc/network/interfaces:2: iface eth0 inet6 v4tunnel: the capture does dhcp (IPv4 "
         "and DHCPv6), static and auto (SLAAC) only"),
        ("iface br0 inet dhcp\n  bridge_ports bond0 eth1\niface bond0 inet manual\n"
         "  bond-slaves eth0\n  bond-mode active-backup\n", "br0",
         "/etc/network/interfaces:1: bridge br0: port bond0 is a bond; the capture puts the "
         "address of a bridge of several ports on one plain interface"),
        ("iface br0 inet dhcp\n  bridge_ports none\n", "br0",
         "/etc/network/interfaces:1: bridge br0 has no ports: the capture has no interface "
         "to put its address on"),
        ("iface eth0 inet static\n  address 10.0.0.5\n  netmask 255.0.255.0\n", "eth0",
         "/etc/network/interfaces:1: netmask: '255.0.255.0' is not a netmask"),
        ("iface eth1 inet dhcp\n", "eth0",
         "no configuration for eth0 (the link to the dump server 10.0.2.2) in ifupdown, "
         "systemd-networkd or NetworkManager files"),
        ("iface eth0 inet6 auto\n", "eth0",
         "/etc/network/interfaces:1: eth0 has no IPv4 address configured (the dump server is "
         "IPv4)"),
    ],
)  # fmt: skip
def test_ifupdown_refusals(tmp_path: Path, interfaces: str, device: str, message: str) -> None:
    root = _tree(tmp_path, {"etc/network/interfaces": interfaces})
    server = "fd00::2" if "inet6 v4tunnel" in interfaces else "10.0.2.2"
    with pytest.raises(HostError) as raised:
        capture_link(root, server, device)
    assert str(raised.value).replace(str(tmp_path), "") == message


NETWORKD = {
    "etc/systemd/network/10-bond0.netdev": "[NetDev]\nName=bond0\nKind=bond\n[Bond]\n"
                                           "Mode=802.3ad\nMIIMonitorSec=100ms\n",
    "etc/systemd/network/20-ports.network": "[Match]\nName=eth*\n[Network]\nBond=bond0\n",
    "etc/systemd/network/30-bond0.network": "[Match]\nName=bond0\n[Network]\nVLAN=vlan7\n",
    "etc/systemd/network/40-vlan7.netdev": "[NetDev]\nName=vlan7\nKind=vlan\n[VLAN]\nId=7\n",
    "etc/systemd/network/50-vlan7.network": "[Match]\nName=vlan7\n[Network]\n"
        "Address=192.168.7.5/24\nAddress=fd07::5/64\nGateway=fd07::1\nGateway=192.168.7.1\n"
        "[Route]\nDestination=fd09::/64\nGateway=fd07::fe\n",
    # The same name under /usr/lib loses to /etc's.
    "usr/lib/systemd/network/50-vlan7.network": "[Match]\nName=vlan7\n[Network]\nDHCP=yes\n",
}  # fmt: skip


def test_networkd_ipv6_on_a_vlan_on_a_bond(tmp_path: Path) -> None:
    root = _tree(tmp_path, NETWORKD, bonded=("eth0", "eth1"))
    link = capture_link(root, "fd07::2", "vlan7")
    assert link.recipe_lines() == (
        'network = "static"\ninterface = "bond0"\nbond = "802.3ad"\n'
        'bond_ports = ["52:54:00:00:00:01", "52:54:00:00:00:02"]\nvlan = 7\n'
        'ip = "fd07::5/64"\ngateway = "fd07::1"\nroutes = ["fd09::/64 via fd07::fe"]\n'
    )
    assert _checked(link.recipe_lines(), "fd07::2").link == "bond0.7"
    assert capture_link(root, "192.168.7.2", "vlan7").addressing.ip == "192.168.7.5/24"


@pytest.mark.parametrize("dhcp", ["yes", "ipv6"])
def test_networkd_dhcpv6(tmp_path: Path, dhcp: str) -> None:
    """DHCP=yes is DHCP for IPv4 and DHCPv6 for IPv6; DHCP=ipv6 DHCPv6 alone."""
    root = _tree(tmp_path, {"etc/systemd/network/eth0.network":
                            f"[Match]\nName=eth0\n[Network]\nDHCP={dhcp}\n"})  # fmt: skip
    six = capture_link(root, "fd00::2", "eth0")
    assert six.recipe_lines() == (
        'network = "dhcpv6"\ninterface = "eth0"\ninterface_mac = "52:54:00:00:00:01"\n'
    )
    assert _checked(six.recipe_lines(), "fd00::2").network.value == "dhcpv6"
    if dhcp == "yes":
        assert capture_link(root, "10.0.2.2", "eth0").addressing.mode.value == "dhcp"
    else:
        with pytest.raises(HostError, match="eth0 has no IPv4 address configured"):
            capture_link(root, "10.0.2.2", "eth0")


NETWORKD_BRIDGE = {
    "etc/systemd/network/10-br0.netdev": "[NetDev]\nName=br0\nKind=bridge\n",
    "etc/systemd/network/20-ports.network": "[Match]\nName=eth*\n[Network]\nBridge=br0\n",
    "etc/systemd/network/30-br0.network": "[Match]\nName=br0\n[Network]\nIPv6AcceptRA=yes\n"
        "Address=192.168.1.5/24\n",
}  # fmt: skip


def test_networkd_bridge_of_two_ports(tmp_path: Path) -> None:
    root = _tree(tmp_path, NETWORKD_BRIDGE)
    link = capture_link(root, "fd00::2", "br0")
    assert link.recipe_lines() == f'network = "slaac"\ninterface = "br0"\n{BRIDGE_KEYS}'
    assert _checked(link.recipe_lines(), "fd00::2").bridge_ports == (MACS["eth0"], MACS["eth1"])
    assert capture_link(root, "192.168.1.2", "br0").addressing.ip == "192.168.1.5/24"


KEYFILES = "etc/NetworkManager/system-connections/"


def test_keyfile_bridge_of_two_ports(tmp_path: Path) -> None:
    ports = {
        KEYFILES + f"br0-{name}.nmconnection": f"[connection]\nid=br0-{name}\ntype=ethernet\n"
        f"interface-name={name}\ncontroller=br0\nport-type=bridge\n"
        for name in ("eth0", "eth1")
    }
    root = _tree(tmp_path, {
        **ports,
        KEYFILES + "br0.nmconnection": "[connection]\nid=br0\ntype=bridge\ninterface-name=br0\n"
            "[ipv4]\nmethod=auto\n",
    })  # fmt: skip
    link = capture_link(root, "10.0.2.2", "br0")
    assert link.recipe_lines() == f'network = "dhcp"\ninterface = "br0"\n{BRIDGE_KEYS}'
    assert _checked(link.recipe_lines()).bridge_mac == BRIDGE_MAC


def test_keyfile_by_mac_with_routes_and_a_one_port_bridge(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        KEYFILES + "wired.nmconnection": "[connection]\nid=wired\ntype=ethernet\n"
            "[ethernet]\nmac-address=52:54:00:00:00:03\n[ipv4]\nmethod=manual\n"
            "address1=10.0.0.5/24,10.0.0.1\nroute1=10.9.0.0/16,10.0.0.254\n[ipv6]\nmethod=ignore\n",
        KEYFILES + "br0.nmconnection": "[connection]\nid=br0\ntype=bridge\ninterface-name=br0\n"
            "[ipv4]\nmethod=auto\n",
        KEYFILES + "br0-port.nmconnection": "[connection]\nid=br0-port\ntype=ethernet\n"
            "interface-name=eth1\ncontroller=br0\nport-type=bridge\n",
    })  # fmt: skip
    wired = capture_link(root, "10.0.0.2", "enp1s0")
    assert wired.recipe_lines() == (
        'network = "static"\ninterface = "enp1s0"\ninterface_mac = "52:54:00:00:00:03"\n'
        'ip = "10.0.0.5/24"\ngateway = "10.0.0.1"\nroutes = ["10.9.0.0/16 via 10.0.0.254"]\n'
    )
    _checked(wired.recipe_lines())
    bridged = capture_link(root, "10.0.2.2", "br0")
    assert bridged.recipe_lines() == (
        'network = "dhcp"\ninterface = "eth1"\ninterface_mac = "52:54:00:00:00:02"\n'
    )


def test_keyfile_dhcpv6(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        KEYFILES + "wired.nmconnection": "[connection]\nid=wired\ntype=ethernet\n"
            "interface-name=eth1\n[ipv4]\nmethod=disabled\n[ipv6]\nmethod=dhcp\n",
    })  # fmt: skip
    six = capture_link(root, "fd00::2", "eth1")
    assert six.recipe_lines() == (
        'network = "dhcpv6"\ninterface = "eth1"\ninterface_mac = "52:54:00:00:00:02"\n'
    )
    assert _checked(six.recipe_lines(), "fd00::2").network.value == "dhcpv6"


def test_keyfile_refusals(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        KEYFILES + "bond.nmconnection": "[connection]\nid=b\ntype=bond\ninterface-name=bond0\n"
            "[bond]\nmode=balance-alb\n[ipv4]\nmethod=auto\n",
    })  # fmt: skip
    with pytest.raises(HostError) as raised:
        capture_link(root, "10.0.2.2", "bond0")
    assert str(raised.value) == (
        f"{tmp_path}/{KEYFILES}bond.nmconnection: [bond] mode: 'balance-alb': the capture "
        "bonds only active-backup and 802.3ad"
    )
    with pytest.raises(HostError, match=r"^'dumps.example.org' is not an IP address"):
        capture_link(root, "dumps.example.org", "bond0")


def test_the_route_names_the_device() -> None:
    assert route_device("fd00::2 from :: dev enp1s0 proto kernel src fd00::5\n", "fd00::2") == (
        "enp1s0"
    )
    with pytest.raises(HostError, match=r"no route to the dump server 10\.9\.9\.9"):
        route_device("", "10.9.9.9")
