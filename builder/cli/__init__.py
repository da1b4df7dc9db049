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

from builder.cli import kexec
from builder.errors import KdumpBuildError
from builder.units import format_mib

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build minimal, reproducible kdump capture images from a TOML recipe.",
)


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
    ignore_fit: Annotated[
        bool,
        typer.Option("--ignore-fit", help="Write the outputs even when the capture does not fit."),
    ] = False,
) -> None:
    """Build the capture kernel, initrd and command line of a recipe."""
    from builder.errors import FitError
    from builder.image.outputs import write_outputs
    from builder.image.pipeline import Steps, plan_build
    from builder.recipe.model import load_recipe

    parsed = load_recipe(recipe)
    outdir = output or Path("build") / parsed.name
    steps = Steps(_progress(quiet or json_output, verbose))
    result = plan_build(parsed, steps)
    if result.fit is not None and result.fit.fits is False:
        if not ignore_fit:
            raise FitError(f"{recipe}: crashkernel.reserve: {result.fit.reason()}")
        typer.echo(
            f"kdump-build: warning: --ignore-fit: building anyway although {result.fit.reason()}",
            err=True,
        )
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
    if result.fit is not None:
        summary["fits"] = result.fit.fits
        summary["recommended"] = result.fit.recommended
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"built {parsed.name} in {total:.2f} s -> {outdir}/")
    typer.echo(f"  kernel   {result.kernel_version} ({outdir}/vmlinuz)")
    typer.echo(
        f"  initrd   {len(result.initrd):,} bytes ({format_mib(len(result.initrd), 2)}, "
        f"{len(result.members)} members, {parsed.initrd.compression}) ({outdir}/initrd.img)"
    )
    typer.echo(f"  cmdline  {result.cmdline}")
    typer.echo(f"  manifest {outdir}/manifest.json")
    if result.fit is not None:
        typer.echo(f"  fit      {result.fit.reason()} ({outdir}/fit.json)")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A kernel image or an initrd.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a kernel image, or list an initrd's members like lsinitrd."""
    from builder.binfmt.kernelimg import describe, parse_kernel_image
    from builder.errors import ImageError, InitrdError
    from builder.image.initrd import COMPRESSION_MAGICS, NEWC_CRC_MAGIC, NEWC_MAGIC, read_initrd

    try:
        data = path.read_bytes()
    except OSError as error:
        raise InitrdError(f"{path}: {error.strerror}") from None
    if not data.startswith((NEWC_MAGIC, NEWC_CRC_MAGIC)):
        try:
            image = parse_kernel_image(data, str(path))
        except ImageError as kernel_error:
            # A compressed initrd starts like a compressed kernel: try it as one.
            try:
                entries = read_initrd(data)
            except InitrdError as initrd_error:
                if not data.startswith(COMPRESSION_MAGICS):
                    raise kernel_error from None
                raise InitrdError(
                    f"{path}: neither an initrd ({initrd_error}) nor a kernel image "
                    f"({str(kernel_error).removeprefix(f'{path}: ')})"
                ) from None
            _print_initrd(entries, len(data), json_output)
            return
        _print_kernel(describe(image), json_output)
        return
    try:
        entries = read_initrd(data)
    except InitrdError as error:
        raise InitrdError(f"{path}: {error}") from None
    _print_initrd(entries, len(data), json_output)


def _print_kernel(description: dict[str, object], json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(description, indent=2))
        return
    for key in (
        "arch",
        "format",
        "version",
        "relocatable",
        "alignment",
        "min_address",
        "memory_size",
        "entry",
        "banner",
    ):
        value = description.get(key)
        shown = f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) else value
        typer.echo(f"{key:<12} {shown}")


def _print_initrd(entries: list[Any], size: int, json_output: bool) -> None:
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
    typer.echo(f"{len(entries)} members, {size:,} bytes", err=True)


def _read_initrd_file(path: Path) -> list[Any]:
    from builder.errors import InitrdError
    from builder.image.initrd import read_initrd

    try:
        data = path.read_bytes()
    except OSError as error:
        raise InitrdError(f"{path}: {error.strerror}") from None
    try:
        return read_initrd(data)
    except InitrdError as error:
        raise InitrdError(f"{path}: {error}") from None


@app.command()
def diff(
    before: Annotated[Path, typer.Argument(help="The first initrd.")],
    after: Annotated[Path, typer.Argument(help="The second initrd.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show members added (+), removed (-) and changed (~) between two initrds."""
    from builder.image.initrd import diff_initrds, sha256

    changes = diff_initrds(_read_initrd_file(before), _read_initrd_file(after))
    if json_output:

        def side(entry: Any) -> dict[str, Any] | None:
            if entry is None:
                return None
            return {
                "mode": f"{entry.mode:06o}",
                "size": entry.size,
                "sha256": sha256(entry.data),
                **({"target": entry.target} if entry.target else {}),
            }

        listing = [
            {
                "path": change.path,
                "status": change.status,
                "before": side(change.before),
                "after": side(change.after),
                "details": change.details(),
            }
            for change in changes
        ]
        typer.echo(json.dumps(listing, indent=2))
        return
    marks = {"added": "+", "removed": "-", "changed": "~"}
    for change in changes:
        details = ", ".join(change.details())
        typer.echo(f"{marks[change.status]} {change.path}" + (f" ({details})" if details else ""))
    counts = {status: sum(c.status == status for c in changes) for status in marks}
    typer.echo(
        f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed",
        err=True,
    )


@app.command()
def fetch(
    recipe: Annotated[Path, typer.Argument(help="The recipe whose source.packages to fetch.")],
    refresh: Annotated[bool, typer.Option(help="Refresh the package lists first.")] = False,
) -> None:
    """Fetch the Debian packages a recipe names into the cache."""
    from builder.image.pipeline import fetch_recipe_packages
    from builder.recipe.model import load_recipe

    for package in fetch_recipe_packages(load_recipe(recipe), refresh=refresh):
        typer.echo(f"{package.name} {package.version} {package.path}")


@app.command("fit")
def fit_command(
    recipe: Annotated[
        Path | None, typer.Argument(help="The recipe; without it, the reservation alone.")
    ] = None,
    ram: Annotated[
        list[str] | None,
        typer.Option("--ram", help="RAM size of a machine (repeat) [crashkernel.ram]."),
    ] = None,
    crashkernel: Annotated[
        str | None,
        typer.Option("--crashkernel", help="crashkernel= value to judge [crashkernel.reserve]."),
    ] = None,
    arch: Annotated[
        str | None, typer.Option("--arch", help="Architecture without a recipe [x86_64].")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Judge a crashkernel= reservation against the capture a recipe builds, per RAM size."""
    from builder.crashkernel.model import DEFAULT_RAM, fit
    from builder.crashkernel.profile import fit_recipe, ram_sizes
    from builder.errors import FitError, RecipeError
    from builder.units import format_size

    rams = ram_sizes(ram, "--ram") if ram else None
    if recipe is None:
        if crashkernel is None:
            raise RecipeError("fit: give a recipe or --crashkernel (with --ram)")
        report = fit(
            crashkernel,
            rams or ram_sizes(DEFAULT_RAM, "--ram"),
            arch=arch or "x86_64",
        )
    else:
        from builder.crashkernel.profile import capture_profile
        from builder.image.pipeline import capture_cmdline, plan_build
        from builder.recipe.model import load_recipe

        if arch is not None:
            raise RecipeError("fit: --arch is only for use without a recipe (it has target.arch)")
        parsed = load_recipe(recipe)
        result = plan_build(parsed)
        profile = capture_profile(
            parsed, result.kernel, capture_cmdline(parsed), result.members, result.initrd
        )
        report = fit_recipe(parsed, profile, spec=crashkernel, rams=rams)
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(f"{report.label} ({report.arch})")
        for row in report.rows:
            line = f"  RAM {format_size(row.ram):>6}: reserved {format_mib(row.reserved):>10}"
            if row.reservation.offset is not None:
                line += f" at {row.reservation.offset:#x}"
            if row.reservation.low:
                line += f" + low {format_mib(row.reservation.low)}"
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
        for note in report.notes:
            typer.echo(f"note: {note}")
    if recipe is not None and report.fits is False:
        raise FitError(f"{recipe}: {report.reason()}")


@app.command()
def restore(
    source: Annotated[
        Path, typer.Argument(help="A flattened dump: vmcore.flat, or the raw dump device.")
    ],
    output: Annotated[Path, typer.Argument(help="The vmcore to write.")],
) -> None:
    """Turn makedumpfile's flattened stream (raw and ssh targets) back into a vmcore."""
    from builder.binfmt.flat import restore_file

    result = restore_file(source, output)
    typer.echo(
        f"restored {output}: {result.size:,} bytes from {result.blocks} blocks "
        f"({result.stream_length:,} bytes of stream)"
    )


@app.command("recipe-doc")
def recipe_doc() -> None:
    """Print the recipe reference (docs/recipe.md) generated from the settings table."""
    from builder.recipe.model import reference_markdown

    typer.echo(reference_markdown(), nl=False)


app.command()(kexec.layout)
app.command("capture-sysfs")(kexec.capture_sysfs)
app.command()(kexec.load)
app.command()(kexec.unload)
app.command()(kexec.status)


def main(argv: list[str] | None = None) -> int:
    """Entry point: `kdump-build RECIPE` is short for `kdump-build build RECIPE`."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {
        info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        for info in app.registered_commands
    }
    if args and args[0] not in commands and not args[0].startswith("-"):
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
