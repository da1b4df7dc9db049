"""The command that lists the dumps saved on this machine: dumps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from builder.cli.compat import Option


def _default_directories() -> list[Path]:
    """The enabled recipe's local dump directories, else /var/crash."""
    # Imported here: at start-up, builder.host.boot would cost ~377 ms.
    from builder.errors import KdumpBuildError
    from builder.host.boot import local_dump_directories
    from builder.host.paths import HostPaths
    from builder.host.state import enabled_recipe

    try:
        found = local_dump_directories(enabled_recipe(HostPaths()))
    except KdumpBuildError:
        found = []
    return found or [HostPaths().crash]


def dumps(
    directory: Annotated[
        Path | None,
        Option("--dir", help="Where the dumps are [the enabled recipe's, else /var/crash]."),
    ] = None,
    json_output: Annotated[bool, Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the saved dumps: time, kernel version, size and the panic line."""
    from builder.errors import HostError

    # Imported here: at start-up, builder.host.dumps would cost ~2.9 ms.
    from builder.host.dumps import list_dumps
    from builder.units import format_mib

    if directory is not None and not directory.is_dir():
        # A directory the user named: its absence is a mistake, not "no dumps".
        raise HostError(f"{directory}: --dir: no such directory")
    found = [dump for place in ([directory] if directory else _default_directories())
             for dump in list_dumps(place)]  # fmt: skip
    if json_output:
        typer.echo(json.dumps([dump.to_json() for dump in found], indent=2))
        return
    if not found:
        typer.echo("no dumps")
        return
    for dump in found:
        state = "" if dump.complete else " INCOMPLETE"
        typer.echo(f"{dump.time:%Y-%m-%d %H:%M:%S} UTC  {dump.kernel_version or '?'}  "
                   f"{format_mib(dump.size)}{state}  {dump.path}")  # fmt: skip
        typer.echo(f"    {dump.panic or 'no panic line in vmcore-dmesg.txt'}")
        for warning in dump.warnings:
            typer.echo(f"    collector: {warning}")
