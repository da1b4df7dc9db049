"""The command line. The only place where errors become messages and exit codes.

Exit codes: 0 success, 2 a user's mistake (recipe, missing or corrupt input),
3 the capture does not fit its reservation, 1 an internal error.
"""

from __future__ import annotations

import contextlib
import json
import stat
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

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


STATE_FILE = Path("/run/kdump-build/crash.json")
METHODS = ("segments", "file", "auto")


def _print_layout(layout: Any, json_output: bool) -> None:
    from builder.kexec.layout import describe_layout, layout_json

    if json_output:
        typer.echo(json.dumps(layout_json(layout), indent=2))
        return
    for line in describe_layout(layout):
        typer.echo(line)
    typer.echo(f"cmdline {layout.details.get('cmdline', '')}")


@app.command()
def layout(
    outdir: Annotated[
        Path, typer.Argument(help="A build's output directory (vmlinuz, initrd.img).")
    ],
    iomem: Annotated[Path, typer.Option("--iomem", help="A captured /proc/iomem.")],
    sysfs: Annotated[
        Path | None,
        typer.Option(
            "--sysfs",
            help="A directory from `kdump-build capture-sysfs` (crash notes, "
            "vmcoreinfo, kcore headers); without it the ELF core header has no notes.",
        ),
    ] = None,
    arch: Annotated[str, typer.Option("--arch", help="Target architecture.")] = "x86_64",
    backup: Annotated[
        bool | None,
        typer.Option(
            "--backup/--no-backup",
            help="Copy the low 640 KiB first (kernels before v5.5) "
            "[default: the recipe's kernel.backup_region].",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print layout.json.")] = False,
) -> None:
    """Compute the kexec segment layout offline; write layout.json and segments/ into OUTDIR."""
    from builder.kexec.layout import write_layout
    from builder.kexec.layout.inputs import (
        plan_layout,
        read_build_outputs,
        read_crash_info_for,
        read_iomem,
    )

    outputs = read_build_outputs(outdir)
    memory = read_iomem(iomem)
    info = read_crash_info_for(sysfs, memory) if sysfs is not None else None
    planned = plan_layout(arch, outputs, memory, info, backup=backup)
    written = write_layout(planned, outdir)
    _print_layout(planned, json_output)
    if not json_output:
        typer.echo(f"wrote {written} and {outdir / 'segments'}/")


@app.command("capture-sysfs")
def capture_sysfs(
    destination: Annotated[Path, typer.Argument(help="Directory to create.")],
) -> None:
    """Save this system's crash notes, vmcoreinfo, kcore headers and iomem for `layout --sysfs`."""
    from builder.kexec.crashinfo import capture_crash_info

    capture_crash_info(Path("/"), destination)
    (destination / "proc" / "iomem").write_bytes(Path("/proc/iomem").read_bytes())
    typer.echo(f"captured into {destination}/ (use --iomem {destination}/proc/iomem)")


def _choose_method(method: str) -> str:
    from builder.kexec.syscalls import lockdown_mode

    if method not in METHODS:
        from builder.errors import LoadError

        raise LoadError(f"--method: {method!r} is not one of {', '.join(METHODS)}")
    if method != "auto":
        return method
    mode = lockdown_mode()
    if mode in ("integrity", "confidentiality"):
        typer.echo(
            f"kdump-build: kernel lockdown is {mode!r}: kexec_load is refused, so the kernel's "
            "own loader (kexec_file_load, signed image) is used",
            err=True,
        )
        return "file"
    reason = "not active" if mode == "none" else "unknown (no /sys/kernel/security/lockdown)"
    typer.echo(
        f"kdump-build: kernel lockdown is {reason}: using kexec_load with our segments", err=True
    )
    return "segments"


def _write_state(state: dict[str, object]) -> None:
    try:
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")
    except OSError as error:
        typer.echo(f"kdump-build: warning: cannot record state in {STATE_FILE}: "
                   f"{error.strerror}", err=True)  # fmt: skip


@app.command()
def load(
    outdir: Annotated[
        Path, typer.Argument(help="A build's output directory (vmlinuz, initrd.img).")
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="segments (kexec_load, our purgatory), file "
            "(kexec_file_load) or auto (file under lockdown).",
        ),
    ] = "auto",
    arch: Annotated[str, typer.Option("--arch", help="Target architecture.")] = "x86_64",
    backup: Annotated[
        bool | None,
        typer.Option(
            "--backup/--no-backup",
            help="Copy the low 640 KiB first (kernels before v5.5) "
            "[default: the recipe's kernel.backup_region].",
        ),
    ] = None,
    print_kexec_command: Annotated[
        bool,
        typer.Option(
            "--print-kexec-command", help="Print the kexec-tools equivalent; load nothing."
        ),
    ] = False,
    show: Annotated[bool, typer.Option("--show", help="Print the planned segments.")] = False,
    testing_corrupt_segment: Annotated[
        str | None,
        typer.Option(
            "--testing-corrupt-segment",
            hidden=True,
            help="TEST ONLY: flip a byte of this segment after the digest.",
        ),
    ] = None,
) -> None:
    """Load the capture kernel from OUTDIR as this system's crash kernel."""
    import shlex

    from builder.kexec.layout import check_layout, corrupt_segment_for_testing
    from builder.kexec.layout.inputs import (
        plan_layout,
        read_build_outputs,
        read_crash_info_for,
        read_iomem,
    )
    from builder.kexec.syscalls import kexec_file_load, kexec_load

    outputs = read_build_outputs(outdir)
    if print_kexec_command:
        chosen = method if method != "auto" else "segments"
        # kexec-tools adds elfcorehdr= and the memory map itself, as our layout does.
        words = ["kexec", "-p", *(["-s"] if chosen == "file" else []),
                 shlex.quote(str(outputs.kernel_path)),
                 "--initrd=" + shlex.quote(str(outputs.initrd_path)),
                 "--command-line=" + shlex.quote(outputs.cmdline)]  # fmt: skip
        typer.echo(" ".join(words))
        return
    chosen = _choose_method(method)
    state: dict[str, object] = {"method": chosen, "outdir": str(outdir.absolute())}
    if chosen == "file":
        kexec_file_load(arch, outputs.kernel_path, outputs.initrd_path, outputs.cmdline)
        typer.echo(f"loaded {outputs.kernel_path} as crash kernel with kexec_file_load")
    else:
        memory = read_iomem(Path("/proc/iomem"))
        info = read_crash_info_for(Path("/"), memory)
        planned = plan_layout(arch, outputs, memory, info, backup=backup)
        if testing_corrupt_segment is not None:
            planned = corrupt_segment_for_testing(planned, testing_corrupt_segment)
            typer.echo(
                f"kdump-build: TESTING: corrupted segment {testing_corrupt_segment!r}", err=True
            )
        check_layout(planned)
        if show:
            _print_layout(planned, False)
        kexec_load(planned)
        state.update(entry=planned.entry, segments=[s.name for s in planned.segments])
        typer.echo(
            f"loaded {len(planned.segments)} segments with kexec_load, entry {planned.entry:#x}"
        )
    _write_state(state)


@app.command()
def unload(
    method: Annotated[str, typer.Option("--method", help="segments, file or auto.")] = "auto",
    arch: Annotated[str, typer.Option("--arch", help="Target architecture.")] = "x86_64",
) -> None:
    """Unload the crash kernel."""
    from builder.kexec.syscalls import unload as kexec_unload

    chosen = _choose_method(method)
    kexec_unload(arch, method=chosen)
    with contextlib.suppress(OSError):
        STATE_FILE.unlink()
    typer.echo("crash kernel unloaded")


@app.command()
def status(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether a crash kernel is loaded, the crash region, and how it was loaded."""
    from builder.kexec.syscalls import kexec_status

    current = kexec_status()
    region: str | None = None
    try:
        from builder.kexec.memmap import parse_iomem

        memory = parse_iomem(Path("/proc/iomem").read_text())
        ranges = memory.crash_ranges()
        region = str(ranges[-1]) if ranges else None
    except (OSError, KdumpBuildError):
        region = None
    recorded: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads(STATE_FILE.read_text())
    method = recorded.get("method") if current.loaded else None
    summary = {
        "loaded": current.loaded,
        "crash_region": region,
        "crash_size": current.crash_size,
        "method": method,
        "lockdown": current.lockdown,
    }
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    loaded = {True: "yes", False: "no", None: "unknown (no /sys/kernel/kexec_crash_loaded)"}
    typer.echo(f"crash kernel loaded: {loaded[current.loaded]}")
    typer.echo(f"crash region: {region or 'none'} ({current.crash_size or 0} bytes)")
    typer.echo(f"method: {method or 'unknown'}")
    typer.echo(f"lockdown: {current.lockdown or 'unknown'}")


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
