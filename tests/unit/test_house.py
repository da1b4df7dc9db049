"""The house rules, checked: one home per architecture fact, small modules and functions,
examples that run.

These read builder/ as source (ast), not by importing it, so a violation is
named by file and line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.arch import ARCHES, Arch
from tests.support.paths import REPO

BUILDER = REPO / "builder"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60

# Every spelling of an architecture: uname -m names, Debian's, the kernel's.
ARCH_WORDS = sorted(
    {arch.value for arch in Arch}
    | {info.debian for info in ARCHES.values()}
    | {"arm64", "riscv", "x86", "ppc64el"},
    key=len,
    reverse=True,
)
ARCH_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(" + "|".join(re.escape(word) for word in ARCH_WORDS) + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
ARCH_MEMBERS = {arch.name for arch in Arch}
# Files whose job is one architecture: named after it (layouts, purgatories), and
# the kernel image formats that are one architecture's boot protocol (bzImage is
# x86's, Image arm64's and RISC-V's), whose header constants carry its name as the
# kernel's documents do.
PER_ARCH_STEMS = {arch.value for arch in Arch}
PER_ARCH_FILES = {BUILDER / "binfmt" / "kernelimg" / name for name in ("bzimage.py", "image.py")}


def modules() -> list[Path]:
    return sorted(BUILDER.rglob("*.py"))


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def arch_spellings(path: Path) -> Iterator[str]:
    """Where `path` names an architecture in code (not in docstrings or comments)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        where = f"{_relative(path)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A key, a path or a name (no spaces) is a fact; prose mentioning one is not.
            text = node.value
            if id(node) not in docstrings and " " not in text and ARCH_PATTERN.search(text):
                yield f"{where}: string {text!r}"
        elif isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Name) and base.id == "Arch" and node.attr in ARCH_MEMBERS:
                yield f"{where}: Arch.{node.attr}"
        names = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.asname or node.name.split(".")[-1]]
        for name in names:
            if ARCH_PATTERN.search(name.replace("_", " ")) or ARCH_PATTERN.search(name):
                yield f"{where}: name {name}"


def test_no_architecture_is_spelled_outside_its_record() -> None:
    found = []
    for path in modules():
        if path == BUILDER / "arch.py" or path.stem in PER_ARCH_STEMS or path in PER_ARCH_FILES:
            continue
        found += list(arch_spellings(path))
    assert not found, "architecture facts belong in builder/arch.py:\n" + "\n".join(found)


def test_the_checker_sees_a_spelled_architecture(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may say x86_64."""\n'
        'TABLE = {"aarch64": 1}\n'
        'HELP = "prose may mention arm64 kernels"\n'
        "def plan_riscv64() -> None:\n    pass\n"
        "DEFAULT = Arch.X86_64\n"
    )
    found = list(arch_spellings(sample))
    assert len(found) == 3, found


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


# bench/ follows the size rules too (its scripts are code the project keeps).
@pytest.mark.parametrize(
    "path", [*modules(), *sorted((REPO / "bench").rglob("*.py"))], ids=_relative
)
def test_module_and_function_sizes(path: Path) -> None:
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{_relative(path)}: {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in _functions(ast.parse(text))
        if node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_relative(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


SKIP_REASON = re.compile(r"doctest: \+SKIP\b.*(needs root|needs a VM|VM)")


def test_skipped_examples_say_why() -> None:
    unexplained = [
        f"{_relative(path)}:{number}"
        for path in modules()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "+SKIP" in line and not SKIP_REASON.search(line)
    ]
    assert not unexplained, "an example that cannot run is prose: " + ", ".join(unexplained)
