"""The command of the crashkernel product: fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from builder.cli.compat import Argument, Option
from builder.units import format_mib

if TYPE_CHECKING:
    from builder.crashkernel.fit import FitReport


def fit_command(
    recipe: Annotated[
        Path | None, Argument(help="The recipe; without it, the reservation alone.")
    ] = None,
    ram: Annotated[
        list[str] | None,
        Option("--ram", help="RAM size of a machine (repeat) [crashkernel.ram]."),
    ] = None,
    crashkernel: Annotated[
        str | None,
        Option("--crashkernel", help="crashkernel= value to judge [crashkernel.reserve]."),
    ] = None,
    arch: Annotated[
        str | None,
        Option("--arch", help="Architecture without a recipe [this machine's]."),
    ] = None,
    kernel: Annotated[
        str | None,
        Option(
            "--kernel",
            help="Release of the kernel that reserves, without a recipe "
            "(rules change with it, e.g. 6.1.0-57-arm64) [the newest rules].",
        ),
    ] = None,
    json_output: Annotated[bool, Option("--json", help="Print JSON.")] = False,
) -> None:
    """Judge a crashkernel= reservation against the capture a recipe builds, per RAM size."""
    # Imported here: at start-up, builder.crashkernel.fit would cost ~76 ms.
    from builder.crashkernel.fit import ram_sizes
    from builder.errors import FitError, RecipeError

    rams = ram_sizes(ram, "--ram") if ram else None
    if recipe is None:
        if crashkernel is None:
            raise RecipeError("fit: give a recipe or --crashkernel (with --ram)")
        report = _fit_reservation(crashkernel, rams, arch, kernel)
    else:
        if arch is not None or kernel is not None:
            raise RecipeError("fit: --arch and --kernel are only for use without a recipe "
                              "(it has target.arch and its kernel)")  # fmt: skip
        report = _fit_recipe(recipe, crashkernel, rams)
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)
    if recipe is not None and report.fits is False:
        raise FitError(f"{recipe}: {report.reason()}")


def _fit_reservation(
    crashkernel: str, rams: list[int] | None, arch: str | None, kernel: str | None
) -> FitReport:
    # Imported here: at start-up, builder.crashkernel.fit would cost ~76 ms.
    from dataclasses import replace

    from builder.arch import arch_info, host_arch, parse_arch
    from builder.crashkernel.fit import fit, ram_sizes
    from builder.crashkernel.reservation import kernel_series
    from builder.errors import RecipeError
    from builder.recipe.settings import DEFAULT_RAM

    target = parse_arch(arch, "--arch") if arch is not None else host_arch()
    if kernel is not None and kernel_series(kernel) is None:
        raise RecipeError(f"fit: --kernel: {kernel!r} is not a kernel release (such as 6.1.0-57)")
    report = fit(crashkernel, rams or ram_sizes(DEFAULT_RAM, "--ram"), arch=target, kernel=kernel)
    rules = arch_info(target).crash
    if kernel is None and rules is not None and rules.older is not None:
        # The rules differ by kernel release here: say which ones were applied.
        since = ".".join(map(str, rules.older[0]))
        note = f"no --kernel: the rules of kernels {since} and later applied (--kernel VERSION)"
        report = replace(report, notes=(*report.notes, note))
    return report


def _fit_recipe(recipe: Path, crashkernel: str | None, rams: list[int] | None) -> FitReport:
    # Imported here: at start-up, builder.image.pipeline would cost ~832 ms.
    from builder.crashkernel.fit import fit_recipe
    from builder.crashkernel.profile import capture_profile
    from builder.image.pipeline import plan_build
    from builder.recipe.parse import load_recipe

    parsed = load_recipe(recipe)
    result = plan_build(parsed)
    profile = capture_profile(parsed, result.kernel, result.cmdline, result.members, result.initrd)
    return fit_recipe(
        parsed, profile, spec=crashkernel, rams=rams, capture_kernel=result.kernel_version
    )


def _print_report(report: FitReport) -> None:
    # Imported here: at start-up, builder.units would cost ~0.6 ms.
    from builder.units import format_size

    typer.echo(f"{report.label} ({report.arch})")
    for row in report.rows:
        line = f"  RAM {format_size(row.ram):>6}: reserved {format_mib(row.reserved):>10}"
        if row.reservation.offset is not None:
            line += f" at {row.reservation.offset:#x}"
        if row.reservation.low:
            line += f" + low {format_mib(row.reservation.low)}"
        if row.reservation.cma:
            line += f" + cma {format_mib(row.reservation.cma)}"
        if row.needed is not None and row.margin is not None:
            verdict = "fits" if row.fits else "DOES NOT FIT"
            needs, margin = format_mib(row.needed), format_mib(row.margin)
            line += f", needs {needs:>10}: {verdict} ({margin} margin)"
        typer.echo(line)
        for note in row.reservation.notes:
            typer.echo(f"      note: {note}")
    worst = report.worst
    if worst is not None and worst.estimate is not None:
        typer.echo(f"  terms at {format_size(worst.ram)} RAM (tightest):")
        for term in worst.estimate.terms:
            typer.echo(f"    {term.name:<18} {format_mib(term.bytes):>10}  {term.explanation}")
    if report.recommended:
        typer.echo(f"recommended: crashkernel={report.recommended}")
    if report.recommended_cma:
        # Imported here: at start-up, builder.crashkernel_syntax would cost ~34 ms.
        from builder.crashkernel_syntax import command_line_words

        split = command_line_words(report.recommended_cma)
        typer.echo(f"or, with CMA (the main system keeps the ,cma part for movable pages; "
                   f"they are not dumped): {split}")  # fmt: skip
    for note in report.notes:
        typer.echo(f"note: {note}")
