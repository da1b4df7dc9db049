"""network.sh's dhcpv6 mode run by Debian 13's busybox (1.37, udhcpc6) in a network
namespace of its own (issue 22, item 3): a lease from tests/support/dhcpv6_server.py
on the peer of a veth pair becomes the link's one global address; with no server the
attempt fails in one line within dump.connect_timeout. The capture kernel's own run,
with a router and an NFS server, is tests/vm/test_dhcpv6.py."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from builder.recipe.parse import parse_recipe
from builder.targets import network
from tests.support.paths import REPO
from tests.unit.targets.test_network_shell import (
    MAC,
    _config,
    _run_in_a_namespace,
    busybox_directory,
)

APPLETS = ("sh", "ip", "sed", "head", "cat", "tr", "sleep", "mount", "rm", "grep", "udhcpc6")
LEASED = "fd00::d6:15"
SERVER_MAC = "52:54:00:00:d6:fe"


@pytest.fixture(scope="module")
def busybox13(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_directory(tmp_path_factory.mktemp("busybox13"), "busybox-static/trixie",
                             "/usr/bin/busybox", APPLETS)  # fmt: skip


def _body(tmp_path: Path, serve: bool, connect_timeout: int) -> str:
    system_ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert system_ip, "iproute2's ip makes the test's veth pair"
    script = tmp_path / "udhcpc6.script"
    script.write_bytes(network.network_files(_options_dhcpv6())[0].data)
    script.chmod(0o755)
    server = (f"cd {REPO} && {sys.executable} -m tests.support.dhcpv6_server peer0 {LEASED} "
              f"{SERVER_MAC} 20 &\n") if serve else ""  # fmt: skip
    return (
        _config(
            f'target = "nfs"\nnfs = "[fd00::2]:/srv"\ninterface_mac = "{MAC}"\n'
            f'network = "dhcpv6"\nconnect_timeout = {connect_timeout}\n'
            # No router here: the route comes from the recipe.
            'routes = ["fd00::/64"]\n'
        )
        + f"KDUMP_UDHCPC6_SCRIPT={script}\n"
        + "mount -t sysfs sysfs /sys\nmount -t tmpfs tmpfs /run\n"
        + f"{system_ip} link add kdump0 address {MAC} type veth peer name peer0\n"
        + f"{system_ip} link set peer0 up\n{server}"
        + 'network_up\necho "host=$host"\nip -6 addr show dev kdump0\nip -6 route\n'
    )


def _options_dhcpv6() -> network.NetworkOptions:
    text = '[source]\nroot = "/"\n[dump]\ntarget = "nfs"\nnfs = "[fd00::2]:/srv"\n'
    options = parse_recipe(text + 'network = "dhcpv6"\n', Path("r.toml")).dump.options.network  # type: ignore[attr-defined]
    assert isinstance(options, network.NetworkOptions)
    return options


def test_the_lease_is_the_links_one_global_address(busybox13: Path, tmp_path: Path) -> None:
    result = _run_in_a_namespace(busybox13, tmp_path / "run.sh", _body(tmp_path, True, 20))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The server's own word, then the capture's: exactly that address, short form.
    assert f"leased {LEASED} (Solicit)\nleased {LEASED} (Request)\n" in result.stdout, output
    assert f"kdump: network: kdump0 is {LEASED}\nhost=fd00--d6-15\n" in output, output
    assert f"inet6 {LEASED}/128 scope global" in output, output
    assert output.count("scope global") == 1, output
    assert "fd00::/64 dev kdump0" in output, output


def test_no_dhcpv6_server_fails_in_one_line_within_connect_timeout(
    busybox13: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = _run_in_a_namespace(busybox13, tmp_path / "run.sh", _body(tmp_path, False, 4))
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "FAILED: no DHCPv6 lease on kdump0 in 4s"
    assert elapsed < 4 + 3, elapsed
