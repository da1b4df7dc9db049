"""network.sh's `network_up` run by Debian's busybox in a network namespace of its own
(issue 22, item 3): the interface found by its MAC address under another name, a static
IPv6 address and gateway, and routes of both families, as the recipe's keys render
them; a bridge's port with carrier; the kernel's own tables read back. Bonds, VLANs and
SLAAC need the capture kernel's modules and a router: tests/vm/test_network_links.py
boots them."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.image.fetch import fetch_packages
from builder.image.packages import PackageRoot
from builder.recipe.parse import parse_recipe
from builder.targets import network

APPLETS = ("sh", "ip", "sed", "head", "cat", "tr", "sleep", "mount", "rm")
MAC = "52:54:00:00:00:aa"


def busybox_directory(directory: Path, package: str, path: str,
                      applets: tuple[str, ...]) -> Path:  # fmt: skip
    """`directory` with the busybox at `path` of Debian's `package` and links of
    `applets` to it (a PATH for the shell part)."""
    packages = fetch_packages([package], "x86_64")
    busybox = directory / "busybox"
    busybox.write_bytes(PackageRoot([p.path for p in packages]).read_bytes(path))
    busybox.chmod(0o755)
    for applet in applets:
        (directory / applet).symlink_to("busybox")
    return directory


@pytest.fixture(scope="module")
def busybox_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_directory(tmp_path_factory.mktemp("busybox"), "busybox-static",
                             "/bin/busybox", APPLETS)  # fmt: skip


def _config(dump: str) -> str:
    recipe = parse_recipe(f'[source]\nroot = "/"\n[dump]\n{dump}', Path("r.toml"))
    options = recipe.dump.options.network  # type: ignore[attr-defined]
    assert isinstance(options, network.NetworkOptions)
    values = {**network.network_config(options), "KDUMP_DEVICE_TIMEOUT": "3"}
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def _run_in_a_namespace(
    busybox_bin: Path, script: Path, body: str
) -> subprocess.CompletedProcess[str]:
    """network.sh, with /init's log and fail, then `body`, run by busybox's sh in network
    and mount namespaces of its own."""
    script.write_text(
        'log() { echo "kdump: $*"; }\nfail() { echo "FAILED: $*"; exit 1; }\n'
        + network.shell_part().decode()
        + body
    )
    return subprocess.run(
        ["unshare", "--net", "--mount", str(busybox_bin / "busybox"), "sh", str(script)],
        capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": f"{busybox_bin}:/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip


def test_static_ipv6_and_routes_on_the_interface_found_by_mac(
    busybox_bin: Path, tmp_path: Path
) -> None:
    system_ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert system_ip, "iproute2's ip makes the test's veth pair"
    result = _run_in_a_namespace(
        busybox_bin,
        tmp_path / "run.sh",
        _config(
            f'target = "nfs"\nnfs = "[fd00::2]:/srv"\ninterface = "eth0"\n'
            f'interface_mac = "{MAC.upper()}"\nnetwork = "static"\nip = "fd00::15/64"\n'
            'gateway = "fd00::1"\nroutes = ["10.9.0.0/16", "fd09::/64 via fd00::fe"]\n'
        )
        # The capture kernel's name is not dump.interface: only the MAC finds it.
        + f"mount -t sysfs sysfs /sys\n{system_ip} link add kdump0 address {MAC} type veth "
        f"peer name peer0\n{system_ip} link set peer0 up\n"
        'network_up\necho "host=$host"\nip -6 addr show dev kdump0\nip -6 route\nip route\n',
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "kdump: network: kdump0 is fd00::15\nhost=fd00--15\n" in output
    assert "inet6 fd00::15/64 scope global" in output
    assert "tentative" not in output  # no duplicate address detection to wait for
    assert "default via fd00::1 dev kdump0" in output
    assert "fd09::/64 via fd00::fe dev kdump0" in output
    assert "10.9.0.0/16 dev kdump0 scope link" in output


def test_a_missing_interface_is_one_line_within_the_device_timeout(
    busybox_bin: Path, tmp_path: Path
) -> None:
    result = _run_in_a_namespace(
        busybox_bin,
        tmp_path / "run.sh",
        _config(f'target = "nfs"\nnfs = "10.0.2.2:/srv"\ninterface_mac = "{MAC}"\n')
        + "mount -t sysfs sysfs /sys\nnetwork_up\n",
    )
    expected = f"FAILED: network interface eth0 ({MAC}) did not appear in 3s\n"
    assert (result.returncode, result.stdout) == (1, expected), result.stderr


def test_a_fallback_attempt_first_undoes_the_links_of_the_one_that_failed(
    busybox_bin: Path, tmp_path: Path
) -> None:
    """Two attempts as /init makes them (each a subshell) with the same static address:
    again on the same interface (its address exists), then on another one (the first
    one's subnet route would come first). Each finds only its own link configured."""
    system_ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert system_ip, "iproute2's ip makes the test's veth pairs"
    other_mac = "52:54:00:00:00:bb"
    static = 'network = "static"\nip = "10.0.2.15/24"\ngateway = "10.0.2.2"\n'
    attempts = [
        _config(f'target = "nfs"\nnfs = "10.0.2.2:/srv"\ninterface_mac = "{mac}"\n{static}')
        for mac in (MAC, MAC, other_mac)
    ]
    links = "".join(
        f"{system_ip} link add kdump{n} address {mac} type veth peer name peer{n}\n"
        f"{system_ip} link set peer{n} up\n"
        for n, mac in enumerate((MAC, other_mac))
    )
    result = _run_in_a_namespace(
        busybox_bin,
        tmp_path / "run.sh",
        "mount -t sysfs sysfs /sys\nmount -t tmpfs tmpfs /run\n"
        + links
        + "".join(f"(\n{config}network_up\n) || echo attempt failed\n" for config in attempts)
        + "ip addr show\nip route\n",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "attempt failed" not in output and "FAILED" not in output, output
    assert output.count("kdump: network: kdump0 is 10.0.2.15\n") == 2, output
    assert "kdump: network: kdump1 is 10.0.2.15\n" in output, output
    # The last attempt's link alone holds the address and the routes.
    assert output.count("inet 10.0.2.15/24") == 1, output
    assert "inet 10.0.2.15/24 scope global kdump1" in output, output
    routes = output[output.index("default via") :]
    assert routes.splitlines()[:2] == [
        "default via 10.0.2.2 dev kdump1 ",
        "10.0.2.0/24 dev kdump1 scope link  src 10.0.2.15 ",
    ], routes


BRIDGE_MAC = "52:54:00:00:00:b0"
OTHER_MAC = "52:54:00:00:00:bb"


def _bridge_recipe(connect_timeout: int) -> str:
    return _config(
        f'target = "nfs"\nnfs = "10.0.2.2:/srv"\ninterface = "br0"\n'
        f'bridge = "port-with-carrier"\nbridge_ports = ["{MAC}", "{OTHER_MAC}"]\n'
        f'bridge_mac = "{BRIDGE_MAC}"\nnetwork = "static"\nip = "10.0.2.15/24"\n'
        f"connect_timeout = {connect_timeout}\n"
    )


def _two_ports(peers_up: tuple[str, ...]) -> str:
    """Two veth pairs, kdump0 (MAC) and kdump1 (OTHER_MAC); a port has carrier once its
    peer is up too."""
    system_ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert system_ip, "iproute2's ip makes the test's veth pairs"
    made = "".join(
        f"{system_ip} link add kdump{n} address {mac} type veth peer name peer{n}\n"
        for n, mac in enumerate((MAC, OTHER_MAC))
    )
    return made + "".join(f"{system_ip} link set {peer} up\n" for peer in peers_up)


def test_a_bridge_puts_the_address_on_the_port_with_carrier_with_the_bridges_mac(
    busybox_bin: Path, tmp_path: Path
) -> None:
    """The first port has no link (its peer is down): the second carries the address and
    the bridge's MAC; a fallback attempt gives it its own MAC back."""
    result = _run_in_a_namespace(
        busybox_bin,
        tmp_path / "run.sh",
        "mount -t sysfs sysfs /sys\nmount -t tmpfs tmpfs /run\n"
        + _two_ports(("peer1",))
        + f"(\n{_bridge_recipe(5)}network_up\n)\nip addr show\n"
        + "undo_links\necho undone\ncat /sys/class/net/kdump1/address\n",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "kdump: network: bridge br0 of kdump0 kdump1: carrier on kdump1, using kdump1\n" \
        in output, output  # fmt: skip
    assert f"kdump: network: kdump1 takes the bridge's MAC {BRIDGE_MAC}\n" in output, output
    assert "kdump: network: kdump1 is 10.0.2.15\n" in output, output
    shown = output[output.index("1: lo") : output.index("undone")]
    kdump0 = shown[shown.index("kdump0@") : shown.index("kdump1@")]
    kdump1 = shown[shown.index("kdump1@") :]
    # The port without carrier is down (no UP flag) and has no address; the chosen one
    # has both, and its link-local address comes from the bridge's MAC (IPv6 stayed off
    # until the port took it).
    assert "<BROADCAST,MULTICAST,M-DOWN>" in kdump0 and "inet " not in kdump0, shown
    assert f"link/ether {BRIDGE_MAC}" in kdump1, shown
    assert "inet6 fe80::5054:ff:fe00:b0/64 scope link" in kdump1, shown
    assert "inet 10.0.2.15/24 scope global kdump1" in kdump1, shown
    assert output.endswith(f"undone\n{OTHER_MAC}\n"), output


def test_a_bridge_without_carrier_fails_within_the_connect_timeout(
    busybox_bin: Path, tmp_path: Path
) -> None:
    result = _run_in_a_namespace(
        busybox_bin,
        tmp_path / "run.sh",
        "mount -t sysfs sysfs /sys\nmount -t tmpfs tmpfs /run\n"
        + _two_ports(())
        + f"{_bridge_recipe(2)}network_up\n",
    )
    expected = "FAILED: no port of bridge br0 (kdump0 kdump1) has carrier after 2s\n"
    assert (result.returncode, result.stdout) == (1, expected), result.stderr
