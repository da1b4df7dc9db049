"""Docs as tests (issue 25): every console example (`$ command` and what it printed) in
README.md and docs/ is run here, the same command, and its output compared.

What may differ, as README.md says beside its build examples: the seconds a build
took ("in 0.15 s"), and the kernel release of Debian's moving kernel ABI, which the
example names (its file names follow it). Everything else is compared byte for byte.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.paths import REPO
from tests.support.recipes import write_recipe

pytestmark = pytest.mark.network

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_SECONDS = re.compile(r" in \d+\.\d+ s ")
_FENCE = "```"


@dataclass(frozen=True)
class Example:
    where: str  # file:line
    command: str
    output: list[str]


def examples() -> list[Example]:
    """Every `$ ` line inside a fenced block, with the lines up to the next one."""
    found = []
    for doc in DOCS:
        inside, current = False, None
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith(_FENCE):
                inside, current = not inside, None
            elif inside and line.startswith("$ "):
                current = Example(f"{doc.name}:{number}", line[2:], [])
                found.append(current)
            elif inside and current is not None:
                current.output.append(line)
    return found


def _kdump_build(work: Path, args: list[str]) -> list[str]:
    result = run_cli(*args, cwd=work)
    return (result.stdout + result.stderr).splitlines()


def _build(work: Path, recipe: str, outdir: str) -> list[str]:
    return _kdump_build(work, [f"recipes/{recipe}.toml", "-o", outdir])


def _kernel_file(work: Path, recipe: str, name: str) -> Path:
    """The kernel image a recipe's build reads, under the name the example gives it."""
    _build(work, recipe, f"build/{recipe}")
    target = work / name
    shutil.copyfile(work / "build" / recipe / "vmlinuz", target)
    return target


def _inspect(work: Path, recipe: str, args: list[str], head: int | None) -> list[str]:
    _kernel_file(work, recipe, args[1])
    lines = _kdump_build(work, args)
    return lines[:head] if head else lines


def _bad_recipe(work: Path, args: list[str]) -> list[str]:
    # The example's bad.toml: the default recipe with the misspelt compression.
    write_recipe(work / "bad.toml", {"initrd": {"compression": "zsdt"}})
    return _kdump_build(work, args)


def runner(command: str) -> Callable[[Path], list[str]]:
    """How the test runs an example's command; a KeyError for one it does not know."""
    words = shlex.split(command.replace(" | head -8", ""))
    head = 8 if command.endswith("| head -8") else None
    program, args = words[0], words[1:]
    if program == "./bootstrap" and args == ["build"]:
        # bootstrap build, once set up, runs exactly this (see bootstrap).
        return lambda work: _kdump_build(work, ["recipes/qemu-x86_64.toml"])
    if program in ("kdump-build", ".venv/bin/kdump-build") and args[0] == "inspect":
        recipe = "qemu-arm64" if args[1].endswith("-arm64") else "qemu-x86_64"
        return lambda work: _inspect(work, recipe, args, head)
    if program in ("kdump-build", ".venv/bin/kdump-build") and args[0] == "bad.toml":
        return lambda work: _bad_recipe(work, args)
    if program == ".venv/bin/kdump-build" and args[0].startswith("recipes/"):
        return lambda work: _kdump_build(work, args)
    raise KeyError(command)


def _normal(lines: list[str], release: str, documented: str) -> list[str]:
    return [_SECONDS.sub(" in N s ", line.replace(documented, release)) for line in lines]


@pytest.mark.parametrize("example", examples(), ids=lambda example: example.where)
def test_the_example_is_what_the_command_prints(tmp_path: Path, example: Example) -> None:
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    actual = runner(example.command)(tmp_path)
    documented = re.search(r"\d+\.\d+\.\d+-\d+", "\n".join(example.output) + example.command)
    current = re.search(r"\d+\.\d+\.\d+-\d+", "\n".join(actual))
    old, new = (documented[0], current[0]) if documented and current else ("", "")
    if old and old.split("-")[0] == new.split("-")[0]:
        # The same kernel series with a newer Debian ABI: the release may differ.
        assert _normal(example.output, new, old) == _normal(actual, new, old), example.where
    else:
        assert _normal(example.output, "", "") == _normal(actual, "", ""), example.where


def test_every_example_has_a_runner() -> None:
    assert len(examples()) >= 6
    for example in examples():
        assert runner(example.command) is not None, example.where
