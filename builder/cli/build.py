"""Commands of the image product: build, fetch, recipe-doc, init."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from builder.cli.compat import Argument, Option
from builder.errors import RecipeError
from builder.units import format_mib

T = TypeVar("T")

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
    ignore_reach: Annotated[
        bool,
        Option("--ignore-reach", help="Write the outputs even when the capture could not dump."),
    ] = False,
) -> None:
    """Build the capture kernel, initrd and command line of a recipe."""
    # Imported here: at start-up, builder.image.pipeline would cost ~832 ms.
    from builder.cli.progress import build_steps
    from builder.errors import FitError, ReachError
    from builder.image.outputs import write_outputs
    from builder.image.pipeline import plan_build
    from builder.recipe.parse import load_recipe

    parsed = load_recipe(recipe)
    outdir = output or Path("build") / parsed.name
    with build_steps(quiet or json_output, verbose) as steps:
        result = plan_build(parsed, steps)
        if result.gaps and not ignore_reach:
            raise ReachError([f"{recipe}: {gap}" for gap in result.gaps])
        if result.fit is not None and result.fit.fits is False and not ignore_fit:
            raise FitError(f"{recipe}: crashkernel.reserve: {result.fit.reason()}")
        with steps.step("write"):
            write_outputs(result, outdir)
    if result.fit is not None and result.fit.fits is False:
        typer.echo(
            f"kdump-build: warning: --ignore-fit: building anyway although {result.fit.reason()}",
            err=True,
        )
    if result.collector is not None and result.collector.too_old:
        typer.echo(f"kdump-build: warning: {result.collector.warning()}", err=True)
    for gap in result.gaps:
        typer.echo(f"kdump-build: warning: --ignore-reach: the capture could not dump: {gap}",
                   err=True)  # fmt: skip
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
        summary["recommended_cma"] = result.fit.recommended_cma
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
    if result.recipe.firmware.loader:
        typer.echo(f"  firmware kdump-load, S90kdump-load, kdump-load.service: copy {outdir}/ "
                   f"to {result.recipe.firmware.directory} in the image")  # fmt: skip


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


def init(
    target: Annotated[
        str | None,
        Option("--target", help="Where the dump goes [the recipe's default target]."),
    ] = None,
    arch: Annotated[
        str | None, Option("--arch", help="Target architecture [this machine's].")
    ] = None,
    release: Annotated[
        str, Option("--release", help="Debian release of the packages [the host's apt].")
    ] = "",
) -> None:
    """Print a complete, commented recipe that builds as it is (kdump-build init > r.toml)."""
    # Imported here: at start-up, builder.recipe.starter and builder.targets would cost
    # ~64 ms and ~123 ms (python -X importtime, on a loaded machine).
    from builder.arch import host_arch, parse_arch
    from builder.recipe.starter import StarterChoice, starter_recipe_text
    from builder.targets import SETTINGS_BY_KEY, default_target, target_kind

    chosen = StarterChoice(
        _option(target_kind, target, "--target") if target else default_target(),
        parse_arch(arch, "--arch") if arch else host_arch(),
        _option(SETTINGS_BY_KEY["source.release"].parse, release, "--release"),
    )
    typer.echo(starter_recipe_text(chosen), nl=False)


def _option(parse: Callable[[Any], T], value: str, flag: str) -> T:
    """An option's value parsed as the recipe key it stands for; a mistake names the flag."""
    try:
        return parse(value)
    except ValueError as error:
        raise RecipeError(f"{flag}: {error}") from None
