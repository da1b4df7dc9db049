"""The command line's cheap start: plain parameter coercion, one command's signature read,
neither pydantic nor rich imported by a bare command (`status` runs at boot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.models import OptionInfo

from builder.cli.coercion import PlainCommand, PlainGroup, plain_type
from builder.cli.compat import Option, for_typer
from tests.support.paths import REPO


def _app() -> tuple[typer.Typer, dict[str, object]]:
    seen: dict[str, object] = {}
    app = typer.Typer(cls=PlainGroup, add_completion=False, rich_markup_mode=None)

    def run(
        count: int = 1,
        path: Path | None = None,
        name: Annotated[list[str] | None, Option("--name")] = None,
        flag: bool = False,
        word: Annotated[str, Option()] = "x",
    ) -> None:
        seen.update(count=count, path=path, name=name, flag=flag, word=word)

    app.command(cls=PlainCommand)(for_typer(run))

    @app.command(cls=PlainCommand)
    def other() -> None:
        pass

    return app, seen


def test_plain_types_coerce_like_typer() -> None:
    app, seen = _app()
    args = ["run", "--count", "3", "--path", "/x", "--name", "a", "--name", "b", "--flag"]
    app(args, standalone_mode=False)
    assert seen == {"count": 3, "path": Path("/x"), "name": ["a", "b"], "flag": True, "word": "x"}
    app(["run"], standalone_mode=False)
    assert seen == {"count": 1, "path": None, "name": None, "flag": False, "word": "x"}  # as typer


def test_a_bad_value_is_a_usage_error() -> None:
    app, _ = _app()
    with pytest.raises(typer.BadParameter, match=r"'three' is not a valid integer"):
        app(["run", "--count", "three"], standalone_mode=False)


def test_only_plain_annotations_skip_typer() -> None:
    assert plain_type(int, OptionInfo()) is int
    assert plain_type(list[Path], OptionInfo()) is Path
    assert plain_type(float, OptionInfo()) is None
    assert plain_type(int, OptionInfo(min=1)) is None  # a range check is typer's
    assert plain_type(Path, OptionInfo(exists=True)) is None


def test_bare_commands_import_neither_pydantic_nor_rich() -> None:
    probe = (
        "import sys\n"
        "from builder.cli import main\n"
        "assert main(['status']) in (0, 4)  # 4: no crash kernel loaded\n"
        "assert main(['status', '--help']) == 0\n"
        "assert main(['--help']) == 0\n"
        "assert main(['fit', '--crashkernel', '256M', '--ram', '1G']) == 0\n"
        "heavy = ('pydantic', 'rich', 'builder.kexec.layout.core', 'builder.image.pipeline')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "Usage: kdump-build status [OPTIONS]" in result.stdout
    assert "Whether a crash kernel is loaded" in result.stdout
