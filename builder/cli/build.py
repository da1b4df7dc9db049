"""Commands of the image product: build, fetch, recipe-doc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from builder.cli.compat import Argument, Option
from builder.units import format_mib

if TYPE_CHECKING:
    from builder.image.pipeline import BuildResult, Steps


def build(
    recipe: Annotated[Path, Argument(help="The recipe TOML file.")],
    output: Annotated[
        Path | None, Option("-o", "--output", help="Output directory [build/<name>].")
    ] = None,
    json_output: Annotated[bool, Option("--json", help="Print a JSON summary.")] = False,
    quiet: Annotated[bool, Option("-q", "--quiet", help="No progress lines.")] = False,
    verbose: Annotated[
        bool, Option("-v", "--verbose", help="Progress lines even when not on a terminal.")
    ] = False,
    ignore_fit: Annotated[
        bool,
        Option("--ignore-fit", help="Write the outputs even when the capture does not fit."),
    ] = False,
) -> None:
    """Build the capture kernel, initrd and command line of a recipe."""
    # Imported here: at start-up, builder.image.pipeline would cost ~832 ms.
    from builder.cli.progress import build_steps
    from builder.errors import FitError
    from builder.image.outputs import write_outputs
    from builder.image.pipeline import plan_build
    from builder.recipe.parse import load_recipe

    parsed = load_recipe(recipe)
    outdir = output or Path("build") / parsed.name
    with build_steps(quiet or json_output, verbose) as steps:
        result = plan_build(parsed, steps)
        if result.fit is not None and result.fit.fits is False and not ignore_fit:
            raise FitError(f"{recipe}: crashkernel.reserve: {result.fit.reason()}")
        with steps.step("write"):
            write_outputs(result, outdir)
    if result.fit is not None and result.fit.fits is False:
        typer.echo(
            f"kdump-build: warning: --ignore-fit: building anyway although {result.fit.reason()}",
            err=True,
        )
    if json_output:
        typer.echo(json.dumps(_summary(result, steps, outdir), indent=2))
    else:
        _print_summary(result, steps, outdir)


def _summary(result: BuildResult, steps: Steps, outdir: Path) -> dict[str, object]:
    summary: dict[str, object] = {
        "output": str(outdir),
        "kernel": result.kernel_version,
        "initrd": str(outdir / "initrd.img"),
        "initrd_size": len(result.initrd),
        "members": len(result.members),
        "cmdline": result.cmdline,
        "seconds": round(sum(seconds for _, seconds in steps.timings), 3),
        "steps": {name: round(seconds, 3) for name, seconds in steps.timings},
    }
    if result.fit is not None:
        summary["fits"] = result.fit.fits
        summary["recommended"] = result.fit.recommended
    return summary


def _print_summary(result: BuildResult, steps: Steps, outdir: Path) -> None:
    total = sum(seconds for _, seconds in steps.timings)
    size = len(result.initrd)
    typer.echo(f"built {result.recipe.name} in {total:.2f} s -> {outdir}/")
    typer.echo(f"  kernel   {result.kernel_version} ({outdir}/vmlinuz)")
    typer.echo(
        f"  initrd   {size:,} bytes ({format_mib(size, 2)}, {len(result.members)} members, "
        f"{result.recipe.initrd.compression}) ({outdir}/initrd.img)"
    )
    typer.echo(f"  cmdline  {result.cmdline}")
    typer.echo(f"  manifest {outdir}/manifest.json")
    if result.fit is not None:
        typer.echo(f"  fit      {result.fit.reason()} ({outdir}/fit.json)")


def fetch(
    recipe: Annotated[Path, Argument(help="The recipe whose source.packages to fetch.")],
    refresh: Annotated[bool, Option(help="Refresh the package lists first.")] = False,
) -> None:
    """Fetch the Debian packages a recipe names into the cache."""
    # Imported here: at start-up, builder.image.pipeline would cost ~832 ms.
    from builder.image.pipeline import fetch_recipe_packages
    from builder.recipe.parse import load_recipe

    for package in fetch_recipe_packages(load_recipe(recipe), refresh=refresh):
        typer.echo(f"{package.name} {package.version} {package.path}")


def recipe_doc() -> None:
    """Print the recipe reference (docs/recipe.md) generated from the settings table."""
    # Imported here: at start-up, builder.recipe.reference would cost ~205 ms.
    from builder.recipe.reference import reference_markdown

    typer.echo(reference_markdown(), nl=False)
