"""The command that computes and applies this machine's reservation: crashkernel."""

from __future__ import annotations

from typing import Annotated

import typer

from builder.cli.compat import Option


def crashkernel(
    apply: Annotated[
        bool, Option("--apply", help="Write it as a GRUB drop-in and run update-grub.")
    ] = False,
    remove: Annotated[
        bool, Option("--remove", help="Remove the drop-in and run update-grub.")
    ] = False,
    show: Annotated[bool, Option("--show", help="Print it (the default).")] = False,
) -> None:
    """The crashkernel= this machine needs, from the fit model: its RAM and its captures
    (one per installed kernel, the largest wins)."""
    # Imported here: at start-up, builder.host.enable would cost ~722 ms.
    from builder.errors import RecipeError
    from builder.host import grub
    from builder.host.enable import Effects, apply_reservation
    from builder.host.paths import HostPaths
    from builder.host.reserve import machine_need

    if sum((apply, remove, show)) > 1:
        raise RecipeError("crashkernel: give one of --apply, --remove, --show")
    paths = HostPaths()
    if remove:
        removed = grub.remove(paths, run_update=grub.has_grub(paths))
        typer.echo(f"removed {paths.grub_dropin}" if removed else f"no {paths.grub_dropin}")
        return
    need = machine_need(paths)
    if apply:
        apply_reservation(paths, need, Effects(systemctl=False), typer.echo)
        return
    typer.echo(f"crashkernel={need.value}")
    typer.echo(f"  RAM {need.ram // 2**20} MiB; the capture of {need.kernel_version} needs "
               f"{need.needed / 2**20:.1f} MiB ({need.margin / 2**20:.1f} MiB margin)")  # fmt: skip
    applied = grub.applied_value(paths)
    typer.echo(f"  applied: {'crashkernel=' + applied if applied else 'no'} ({paths.grub_dropin})")
