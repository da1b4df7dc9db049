"""The command line. The only place where errors become messages and exit codes.

One module per command group (build, inspect, fit, kexec, restore; machine, reserve,
dumps for this machine's own kdump) holds the
commands, each a thin layer: parse the arguments, call a product, print.
This module registers them and turns every error into one line on stderr.

Exit codes: 0 success, 2 a user's mistake (recipe, missing or corrupt input,
bad usage, a capture that could not reach its dump target), 3 the capture does
not fit its reservation, 4 `status`: no crash kernel is loaded, 1 an internal error.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from typer.core import TyperCommand
from typer.models import CommandInfo

from builder.cli import build, dumps, fit, inspect, kexec, machine, network, reserve, restore
from builder.cli.coercion import PlainCommand, PlainGroup
from builder.cli.compat import Option, for_typer
from builder.errors import KdumpBuildError, ReachError

PROG = "kdump-build"
USAGE_EXIT_CODE = 2
INTERNAL_EXIT_CODE = 1
# kdump-build's own files (init.sh, the purgatory object, ...): an error there is ours.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _usage_error_class() -> type[typer.TyperException]:
    """The base class of the framework's usage errors.

    typer 0.26 and later vendor click and raise their own `TyperException`;
    older ones (Debian 13 ships typer 0.15.2 with click 8.1.8) raise click's
    `ClickException`, which has the same `format_message`, `exit_code` and `ctx`.
    """
    vendored = getattr(typer, "TyperException", None)
    if isinstance(vendored, type):
        return vendored
    return cast("type[typer.TyperException]", importlib.import_module("click").ClickException)


USAGE_ERROR = _usage_error_class()

# Plain help text (rich_markup_mode=None): rendering it with rich costs more
# than the rest of `--help`.
APP_SETTINGS: dict[str, Any] = {
    "cls": PlainGroup,
    "add_completion": False,
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "help": "Build minimal, reproducible kdump capture images from a TOML recipe.",
}
app = typer.Typer(**APP_SETTINGS)


def installed_version() -> str:
    """kdump-build's version, as its installation records it (pyproject.toml's)."""
    # Imported here: at start-up, importlib.metadata would cost ~17 ms.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PROG)
    except PackageNotFoundError:
        return "unknown (not installed: run it from an installation or ./bootstrap's .venv)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {installed_version()}")
        raise typer.Exit()


def _options(
    version: Annotated[
        bool,
        Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # The group's own options; commands have theirs.
    return None


app.callback()(for_typer(_options))


app.command()(for_typer(build.build))
app.command()(for_typer(inspect.inspect))
app.command()(for_typer(inspect.diff))
app.command()(for_typer(build.fetch))
app.command("fit")(for_typer(fit.fit_command))
app.command()(for_typer(restore.restore))
app.command("recipe-doc")(for_typer(build.recipe_doc))
app.command()(for_typer(build.init))
app.command()(for_typer(kexec.layout))
app.command("capture-sysfs")(for_typer(kexec.capture_sysfs))
app.command()(for_typer(kexec.load))
app.command()(for_typer(kexec.unload))
app.command()(for_typer(kexec.status))
app.command()(for_typer(machine.enable))
app.command()(for_typer(machine.disable))
app.command()(for_typer(machine.boot))
app.command()(for_typer(machine.reload))
app.command("kernel-installed")(for_typer(machine.kernel_installed))
app.command("kernel-removed")(for_typer(machine.kernel_removed))
app.command()(for_typer(reserve.crashkernel))
app.command("dumps")(for_typer(dumps.dumps))
app.command()(for_typer(network.network))


def _name(info: CommandInfo) -> str:
    return info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")


def _command_names() -> set[str]:
    return {_name(info) for info in app.registered_commands}


def _app_for(name: str) -> typer.Typer:
    """The application with only the command `name`, when it names one, else all of them.

    typer reads the signature of every registered command on each start; a
    run of one command (`status` at boot) needs only that one. Every command
    gets the plain coercion (builder.cli.coercion) unless it asks for a class.
    """
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = PlainCommand
    chosen = [info for info in app.registered_commands if _name(info) == name]
    if not chosen:
        return app
    single = typer.Typer(**APP_SETTINGS)
    # A callback keeps it a group, so `kdump-build status` still names its command.
    single.callback()(_group)
    single.registered_commands = chosen
    return single


def _group() -> None:
    # No options of its own: the group's help is APP_SETTINGS' help.
    return None


def _fail(message: str, exit_code: int) -> int:
    # Messages quote outside bytes (names in packages, recipes, images): whatever a
    # product let through, no line break or terminal control sequence reaches stderr.
    line = "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)
    typer.echo(f"{PROG}: error: {line}", err=True)
    return exit_code


def _usage_error(error: typer.TyperException) -> int:
    """A usage error as one line, with where to find the command's help."""
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else PROG
    message = " ".join(error.format_message().split())
    return _fail(f"{message} (try '{command} --help')", error.exit_code)


def _is_own_file(filename: object) -> bool:
    if not isinstance(filename, str | bytes) or not filename:
        return False
    path = Path(filename.decode(errors="replace") if isinstance(filename, bytes) else filename)
    return path.absolute().is_relative_to(PACKAGE_DIR)


def _os_error(error: OSError) -> int:
    """An operating-system error that escaped the products: one line naming the path.

    Exit 2 for a path of the user's; 1, an internal error, for one of
    kdump-build's own files (a broken installation).
    """
    where = str(error.filename) if error.filename is not None else ""
    if error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    reason = error.strerror or str(error)
    if _is_own_file(error.filename):
        return _fail(f"{where}: {reason} (a file of kdump-build itself: reinstall it)",
                     INTERNAL_EXIT_CODE)  # fmt: skip
    return _fail(f"{where}: {reason}" if where else reason, USAGE_EXIT_CODE)


def main(argv: list[str] | None = None) -> int:
    """Entry point: `kdump-build RECIPE` is short for `kdump-build build RECIPE`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        app(["--help"], prog_name=PROG, standalone_mode=False)
        return USAGE_EXIT_CODE
    if args[0] not in _command_names() and not args[0].startswith("-"):
        args.insert(0, "build")
    try:
        # Not standalone: usage errors come here as exceptions instead of a
        # multi-line panel and an exit inside typer.
        code = _app_for(args[0])(args, prog_name=PROG, standalone_mode=False)
    except USAGE_ERROR as error:
        return _usage_error(error)
    except ReachError as error:
        for line in error.lines:
            _fail(line, error.exit_code)
        return error.exit_code
    except KdumpBuildError as error:
        return _fail(str(error), error.exit_code)
    except OSError as error:
        return _os_error(error)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo(f"{PROG}: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
