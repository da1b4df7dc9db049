"""`kdump-build network SERVER`: this machine's link to a dump server, as the recipe's
[dump] network keys (read from ifupdown, systemd-networkd or NetworkManager files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from builder.cli.compat import Argument, Option


def network(
    server: Annotated[str, Argument(help="The dump server's IP address.")],
    interface: Annotated[
        str, Option(help="The interface that reaches SERVER [the kernel's route to it].")
    ] = "",
    root: Annotated[Path, Option(help="The machine's root directory (its /etc and /sys).")] = Path(
        "/"
    ),
) -> None:
    """Print the [dump] keys that bring up, in the capture, this machine's link to SERVER
    as the machine configures it (bond, VLAN, static or DHCP or SLAAC, routes), its
    interfaces named by MAC address."""
    # Imported here: at start-up, builder.host.netconfig would cost ~270 ms.
    from builder.host.netconfig import capture_link

    link = capture_link(root, server, interface or None)
    typer.echo(f"# The link to {server}, from {', '.join(link.sources)}", nl=True)
    typer.echo(link.recipe_lines(), nl=False)
