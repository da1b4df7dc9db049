"""The [dump] table `enable --target NAME --to DESTINATION` writes for a network
target: the target's own keys (the target answers, `TargetKind.enable_keys`), the link
to its server from this machine's own network files (as `kdump-build network` prints
it), and optionally a fallback to the filesystem of /var/crash.

Everything is checked before anything is written: a refusal names the option.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.errors import HostError
from builder.host.netconfig import capture_link
from builder.host.netconfig.model import CaptureLink
from builder.host.probe import DumpFilesystem
from builder.host.recipe import DEFAULT_KEEP, local_keys
from builder.image.programs import busybox_applets
from builder.recipe.dump import EnableRequest, TargetKind
from builder.recipe.text import comment_text
from builder.targets import target_kind
from builder.targets.network import DHCPV6_APPLET, NetworkMode


@dataclass(frozen=True)
class NetworkRequest:
    """What `enable --target NAME --to DESTINATION` asked for: the target, what its keys
    come from, the interface that reaches the server ("": the kernel's route to it), and
    whether the dumps fall back to the filesystem of /var/crash."""

    target: TargetKind
    enable: EnableRequest
    interface: str = ""
    fallback_local: bool = False


def network_request(name: str, enable: EnableRequest, interface: str = "",
                    fallback_local: bool = False) -> NetworkRequest:  # fmt: skip
    """The request for the target called `name` (a `HostError` naming --target for a name
    that is none).

    >>> network_request("nsf", EnableRequest("10.0.2.2:/srv"))
    Traceback (most recent call last):
    builder.errors.HostError: --target: 'nsf' is not one of local, raw, nfs, ssh
    """
    try:
        target = target_kind(name)
    except ValueError as error:
        raise HostError(f"--target: {error}") from None
    return NetworkRequest(target, enable, interface, fallback_local)


def network_dump_table(request: NetworkRequest, root: Path, local: DumpFilesystem | None = None,
                       busybox: str = "/bin/busybox") -> str:  # fmt: skip
    """The [dump] table for `request` on the machine at `root`, with a fallback to the
    filesystem `local` (/var/crash's) when given; `busybox` is the one the capture packs.
    Refuses, naming the option, what the capture cannot reach or the machine does not
    have."""
    keys = request.target.enable_keys(request.enable, root)
    try:
        link = capture_link(root, keys.server, request.interface or None)
    except HostError as error:
        raise HostError(f"--to: {error}") from None
    if link.addressing.mode is NetworkMode.DHCPV6:
        _require_dhcpv6_client(root, busybox, link)
    lines = [*keys.lines, *_link_lines(keys.server, link)]
    if local is not None:
        lines += [f"keep = {DEFAULT_KEEP}", "", "[[dump.fallback]]",
                  "# When the server cannot be reached or takes nothing:",
                  local_keys(local).rstrip("\n")]  # fmt: skip
    return "[dump]\n" + "".join(f"{line}\n" for line in lines)


def _require_dhcpv6_client(root: Path, busybox: str, link: CaptureLink) -> None:
    """The capture's DHCPv6 client is busybox's udhcpc6 (1.37 and later; Debian 12's 1.35
    has none), read from the applet table of this machine's busybox."""
    path = root / busybox.lstrip("/")
    try:
        applets = busybox_applets(path.read_bytes())
    except OSError as error:
        raise HostError(f"--to: {path}: {error.strerror}") from None
    if DHCPV6_APPLET not in applets:
        raise HostError(f"--to: {link.sources[0]}: the link takes its IPv6 address by DHCPv6 "
                        f"and this machine's busybox ({busybox}) has no {DHCPV6_APPLET} "
                        "applet: install busybox-static from Debian 13 or later (1.37+), or "
                        "give the link a static IPv6 address or SLAAC")  # fmt: skip


def _link_lines(server: str, link: CaptureLink) -> list[str]:
    sources = ", ".join(comment_text(source) for source in link.sources)
    return [f"# The link to {server} as this machine configures it ({sources}),",
            "# its network cards named by MAC address.",
            *link.recipe_lines().splitlines()]  # fmt: skip
