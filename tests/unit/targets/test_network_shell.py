"""network.sh's `network_up` run by Debian's busybox in a network namespace of its own
(issue 22, item 3): the interface found by its MAC address under another name, a static
IPv6 address and gateway, and routes of both families, as the recipe's keys render
them; the kernel's own tables read back. Bonds, VLANs and SLAAC need the capture
kernel's modules and a router: tests/vm/test_network_links.py boots them."""

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
