"""The command line. The only place where errors become messages and exit codes.

Exit codes: 0 success, 2 a user's mistake (recipe, missing or corrupt input),
3 the capture does not fit its reservation, 1 an internal error.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from builder.errors import KdumpBuildError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build minimal, reproducible kdump capture images from a TOML recipe.",
)

COMMANDS = ("build", "inspect", "fetch", "recipe-doc", "restore")


def _progress(quiet: bool, verbose: bool) -> Any:
    """Step lines on stderr: on a terminal by default, elsewhere only with --verbose."""
    show = verbose or (not quiet and sys.stderr.isatty())

    def report(step: str, seconds: float) -> None:
        if show:
            typer.echo(f"  {step:<24} {seconds:6.2f} s", err=True)

    return report


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Output directory [build/<name>].")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress lines.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Progress lines even when not on a terminal.")
    ] = False,
) -> None:
    """Build the capture kernel, initrd and command line of a recipe."""
    from builder.build import Steps, plan_build, write_outputs
    from builder.recipe import load_recipe

    parsed = load_recipe(recipe)
    outdir = output or Path("build") / parsed.name
    steps = Steps(_progress(quiet or json_output, verbose))
    result = plan_build(parsed, steps)
    with steps.step("write"):
        write_outputs(result, outdir)
    total = sum(seconds for _, seconds in steps.timings)
    summary = {
        "output": str(outdir),
        "kernel": result.kernel_version,
        "initrd": str(outdir / "initrd.img"),
        "initrd_size": len(result.initrd),
        "members": len(result.members),
        "cmdline": result.cmdline,
        "seconds": round(total, 3),
        "steps": {name: round(seconds, 3) for name, seconds in steps.timings},
    }
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"built {parsed.name} in {total:.2f} s -> {outdir}/")
    typer.echo(f"  kernel   {result.kernel_version} ({outdir}/vmlinuz)")
    typer.echo(
        f"  initrd   {len(result.initrd):,} bytes ({len(result.initrd) / 2**20:.2f} MiB, "
        f"{len(result.members)} members, {parsed.initrd.compression}) ({outdir}/initrd.img)"
    )
    typer.echo(f"  cmdline  {result.cmdline}")
    typer.echo(f"  manifest {outdir}/manifest.json")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="An initrd (any compression, concatenated).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the members of an initrd, like lsinitrd."""
    from builder.errors import InitrdError
    from builder.initrd import read_initrd

    try:
        data = path.read_bytes()
    except OSError as error:
        raise InitrdError(f"{path}: {error.strerror}") from None
    try:
        entries = read_initrd(data)
    except InitrdError as error:
        raise InitrdError(f"{path}: {error}") from None
    if json_output:
        listing = [
            {
                "path": entry.path,
                "mode": f"{entry.mode:06o}",
                "size": entry.size,
                **({"target": entry.target} if entry.target else {}),
                **(
                    {"rdev": list(entry.rdev)}
                    if stat.S_ISCHR(entry.mode) or stat.S_ISBLK(entry.mode)
                    else {}
                ),
                "segment": entry.segment,
            }
            for entry in entries
        ]
        typer.echo(json.dumps(listing, indent=2))
        return
    for entry in entries:
        suffix = f" -> {entry.target}" if entry.target else ""
        typer.echo(f"{stat.filemode(entry.mode)} {entry.size:>10} {entry.path}{suffix}")
    typer.echo(f"{len(entries)} members, {len(data):,} bytes", err=True)


@app.command()
def fetch(
    recipe: Annotated[Path, typer.Argument(help="The recipe whose source.packages to fetch.")],
    refresh: Annotated[bool, typer.Option(help="Refresh the package lists first.")] = False,
) -> None:
    """Fetch the Debian packages a recipe names into the cache."""
    from builder.fetch import fetch_packages
    from builder.recipe import load_recipe

    parsed = load_recipe(recipe)
    for package in fetch_packages(parsed.source.packages, parsed.target.arch, refresh=refresh):
        typer.echo(f"{package.name} {package.version} {package.path}")


@app.command()
def restore(
    source: Annotated[
        Path, typer.Argument(help="A flattened dump: vmcore.flat, or the raw dump device.")
    ],
    output: Annotated[Path, typer.Argument(help="The vmcore to write.")],
) -> None:
    """Turn makedumpfile's flattened stream (raw and ssh targets) back into a vmcore."""
    from builder.flat import restore_file

    result = restore_file(source, output)
    typer.echo(
        f"restored {output}: {result.size:,} bytes from {result.blocks} blocks "
        f"({result.stream_length:,} bytes of stream)"
    )


@app.command("recipe-doc")
def recipe_doc() -> None:
    """Print the recipe reference (docs/recipe.md) generated from the settings table."""
    from builder.recipe import reference_markdown

    typer.echo(reference_markdown(), nl=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point: `kdump-build RECIPE` is short for `kdump-build build RECIPE`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and not args[0].startswith("-"):
        args.insert(0, "build")
    try:
        # Typer handles usage errors itself (message, exit 2) and exits via SystemExit.
        app(args, prog_name="kdump-build")
    except KdumpBuildError as error:
        typer.echo(f"kdump-build: error: {error}", err=True)
        return error.exit_code
    except KeyboardInterrupt:
        typer.echo("kdump-build: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
