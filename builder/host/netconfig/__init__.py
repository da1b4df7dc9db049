"""This machine's network configuration of the link to a dump server, as recipe keys.

The interface comes from the kernel's route to the server (`ip route get`); its
configuration from the first of ifupdown, systemd-networkd and NetworkManager's
keyfiles that configures it; MAC addresses from /sys (a bond port's permanent one:
the bond gives its ports its own).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from builder.errors import HostError
from builder.host.netconfig.ifupdown import read_ifupdown
from builder.host.netconfig.keyfile import read_keyfiles
from builder.host.netconfig.model import CaptureLink, HostLink, resolve
from builder.host.netconfig.networkd import read_networkd
from builder.image.hostonly import permanent_mac
from builder.targets.netlinks import address

ROUTE_DEVICE = re.compile(r"\bdev (\S+)")


def route_device(output: str, server: str) -> str:
    """The interface of `ip route get SERVER`'s answer.

    >>> route_device("10.0.2.2 via 10.0.2.1 dev bond0.42 src 10.0.2.15 uid 0\\n", "10.0.2.2")
    'bond0.42'
    """
    found = ROUTE_DEVICE.search(output)
    if found is None:
        raise HostError(f"no route to the dump server {server} on this machine")
    return found.group(1)


def _route_to(server: str) -> str:
    try:
        result = subprocess.run(["ip", "route", "get", server], capture_output=True, text=True,
                                check=False)  # fmt: skip
    except OSError as error:
        raise HostError(f"ip route get {server}: {error.strerror}") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise HostError(f"no route to the dump server {server}: {last}")
    return route_device(result.stdout, server)


class _Sysfs:
    def __init__(self, root: Path) -> None:
        self.net = root / "sys/class/net"

    def interfaces(self) -> tuple[str, ...]:
        return tuple(sorted(path.name for path in self.net.glob("*")))

    def mac_of(self, name: str) -> str:
        mac = permanent_mac(self.net / name)
        if mac:
            return mac
        raise HostError(f"{self.net / name}: no such interface on this machine (its MAC "
                        "address names it in the capture)")  # fmt: skip

    def name_of_mac(self, mac: str) -> str:
        for name in self.interfaces():
            if (self.net / name / "address").is_file() and self.mac_of(name) == mac:
                return name
        return ""


def host_links(root: Path) -> list[dict[str, HostLink]]:
    """What each network manager's files under `root` configure, in the order asked."""
    sysfs = _Sysfs(root)
    return [read_ifupdown(root), read_networkd(root, sysfs.interfaces()),
            read_keyfiles(root, sysfs.name_of_mac)]  # fmt: skip


def capture_link(root: Path, server: str, device: str | None = None) -> CaptureLink:
    """The recipe keys that bring up, in the capture, the link this machine reaches
    `server` (an IP address) through; `device` is that link's name (asked of the kernel's
    routes when None)."""
    parsed = address(server)
    if parsed is None:
        raise HostError(f"{server!r} is not an IP address (the capture has no resolver)")
    device = device or _route_to(server)
    sysfs = _Sysfs(root)
    for links in host_links(root):
        if device in links:
            return resolve(links, device, parsed.version, sysfs.mac_of)
    raise HostError(f"no configuration for {device} (the link to the dump server {server}) in "
                    "ifupdown, systemd-networkd or NetworkManager files")  # fmt: skip
