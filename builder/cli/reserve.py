"""The command that computes and applies this machine's reservation: crashkernel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from builder.cli.compat import Option

if TYPE_CHECKING:
    from builder.host.paths import HostPaths


def crashkernel(
    apply: Annotated[
        bool, Option("--apply", help="Write it as a GRUB drop-in and run update-grub.")
    ] = False,
    remove: Annotated[
        bool, Option("--remove", help="Remove the drop-in and run update-grub.")
    ] = False,
    show: Annotated[bool, Option("--show", help="Print it (the default).")] = False,
    cma: Annotated[
        bool,
        Option(
            "--cma",
            help="A small fixed part plus crashkernel=SIZE,cma, where the kernel reserves it "
            "(docs/crashkernel.md): the main system keeps the CMA part for movable pages; "
            "they are not dumped.",
        ),
    ] = False,
    recipe: Annotated[
        Path | None,
        Option(
            "--recipe",
            help="With --show: judge this recipe's capture instead "
            "[the captures enable built, else the recipe enable would write].",
        ),
    ] = None,
) -> None:
    """The crashkernel= this machine needs, from the fit model: its RAM and its captures
    (one per installed kernel, the largest wins)."""
    # Imported here: at start-up, builder.host.enable would cost ~722 ms.
    from builder.crashkernel_syntax import command_line_words
    from builder.errors import RecipeError
    from builder.host import grub
    from builder.host.enable import Effects, apply_reservation
    from builder.host.paths import HostPaths
    from builder.host.reserve import machine_need, records

    if sum((apply, remove, show)) > 1:
        raise RecipeError("crashkernel: give one of --apply, --remove, --show")
    paths = HostPaths()
    if remove:
        removed = grub.remove(paths, run_update=grub.has_grub(paths))
        typer.echo(f"removed {paths.grub_dropin}" if removed else f"no {paths.grub_dropin}")
        return
    if recipe is not None or (not apply and not records(paths)):
        if apply:
            raise RecipeError("crashkernel: --recipe goes with --show (enable applies a recipe)")
        if cma:
            raise RecipeError("crashkernel: --cma goes with the captures enable built")
        _show_unapplied(recipe, paths)
        return
    need = machine_need(paths, cma=cma)
    if apply:
        apply_reservation(paths, need, Effects(systemctl=False), typer.echo)
        return
    typer.echo(command_line_words(need.value))
    typer.echo(f"  RAM {need.ram // 2**20} MiB; the capture of {need.kernel_version} needs "
               f"{need.needed / 2**20:.1f} MiB ({need.margin / 2**20:.1f} MiB margin)")  # fmt: skip
    applied = command_line_words(grub.applied_value(paths) or "") or "no"
    typer.echo(f"  applied: {applied} ({paths.grub_dropin})")


def _show_unapplied(recipe: Path | None, paths: HostPaths) -> None:
    """The reservation computed in memory, before anything is enabled: from `recipe`, else
    from the recipe enable would write for this machine, for its running kernel."""
    # Imported here: at start-up, builder.host.reserve and builder.recipe.parse would cost
    # ~169 ms and ~255 ms (python -X importtime, on a loaded machine).
    from builder.host.probe import machine_ram, probe_host
    from builder.host.recipe import for_kernel, host_recipe_text
    from builder.host.reserve import recipe_need
    from builder.recipe.parse import load_recipe, parse_recipe

    if recipe is not None:
        parsed, source = load_recipe(recipe), str(recipe)
    else:
        facts = probe_host(paths)
        source = "the recipe enable would write"
        parsed = for_kernel(parse_recipe(host_recipe_text(facts, str(paths.root)),
                                         paths.recipe), os.uname().release)  # fmt: skip
    need = recipe_need(parsed, machine_ram())
    typer.echo(f"crashkernel={need.value}")
    typer.echo(f"  RAM {need.ram // 2**20} MiB; the capture of {need.kernel_version} needs "
               f"{need.needed / 2**20:.1f} MiB ({need.margin / 2**20:.1f} MiB margin)")  # fmt: skip
    typer.echo(f"  computed from {source}; not applied (kdump-build enable applies it)")
