"""The house rules, checked: one home per architecture fact, small modules and functions,
examples that run.

These read builder/ as source (ast), not by importing it, so a violation is
named by file and line.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.arch import ARCHES, Arch
from builder.targets import target_kinds
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


def _nodes(path: Path, pattern: re.Pattern[str]) -> Iterator[tuple[str, ast.AST, bool]]:
    """Every node of `path`, where it is, and whether it is a string in code that `pattern`
    finds: a key, a path or a name (no spaces) is a fact; prose mentioning one, and
    docstrings, are not."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        where = f"{_relative(path)}:{getattr(node, 'lineno', '?')}"
        fact = (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and " " not in node.value
            and bool(pattern.search(node.value))
        )
        yield where, node, fact


def arch_spellings(path: Path) -> Iterator[str]:
    """Where `path` names an architecture in code (not in docstrings or comments)."""
    for where, node, fact in _nodes(path, ARCH_PATTERN):
        if fact and isinstance(node, ast.Constant):
            yield f"{where}: string {node.value!r}"
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
    found = sorted(line.split(": ", 1)[1] for line in arch_spellings(sample))
    assert found == ["Arch.X86_64", "name plan_riscv64", "string 'aarch64'"], found


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


def test_the_size_rule_catches_a_601_line_module_and_a_61_line_function(tmp_path: Path) -> None:
    module = tmp_path / "long.py"
    module.write_text("".join(f"X{index} = {index}\n" for index in range(601)))
    function = tmp_path / "function.py"
    function.write_text("def sixty_one() -> None:\n" + "    pass\n" * 60)
    with pytest.raises(AssertionError, match=r"long\.py: 601 lines"):
        test_module_and_function_sizes(module)
    with pytest.raises(AssertionError, match=r"sixty_one \(61 lines, line 1\)"):
        test_module_and_function_sizes(function)
    function.write_text("def sixty() -> None:\n" + "    pass\n" * 59)
    test_module_and_function_sizes(function)  # 60 lines: allowed


# --- the import graph ------------------------------------------------------------------------

ARCHITECTURE_DOC = REPO / "docs" / "architecture.md"
Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Every module an import statement may name (`from a import b` may import a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path) -> Graph:
    """Which modules of the package at `root` each of its modules imports: every import
    statement, at any level (inside functions and `if TYPE_CHECKING:` too)."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: Graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {
            imported
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for imported in _imported(node, package)
            if imported in paths and imported != name
        }
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles: strongly connected groups of more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_no_import_cycle_in_builder() -> None:
    assert cycles(import_graph(BUILDER)) == []


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_cycle_check_finds_a_planted_cycle(tmp_path: Path) -> None:
    package = _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import B\n",
        "pkg/b.py": "def late() -> None:\n    from pkg import c\n",
        "pkg/c.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import A\n",
        "pkg/d.py": "from . import a\n",
    })  # fmt: skip
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b", "pkg.c"]]


def layers(text: str) -> list[list[str]]:
    """The layer order of docs/architecture.md's "Layers" list: per numbered item, the
    module prefixes it names in backticks."""
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    return [re.findall(r"`(builder[\w.]*)`", line)
            for line in section.splitlines() if re.match(r"\d+\. ", line)]  # fmt: skip


def layer_of(module: str, order: list[list[str]]) -> int | None:
    """The layer of the longest prefix that names `module`."""
    matches = [(len(prefix), number) for number, names in enumerate(order) for prefix in names
               if module == prefix or module.startswith(prefix + ".")]  # fmt: skip
    return max(matches)[1] if matches else None


def upward_imports(graph: Graph, order: list[list[str]]) -> list[str]:
    """Imports of a module in a later layer, and modules in no layer."""
    found = []
    for module, imported in sorted(graph.items()):
        own = layer_of(module, order)
        if own is None:
            if "." in module:  # the top package itself holds nothing
                found.append(f"{module}: in no layer")
            continue
        found += [f"{module} -> {other}" for other in sorted(imported)
                  if (layer_of(other, order) or 0) > own]  # fmt: skip
    return found


def test_no_package_imports_one_above_it() -> None:
    order = layers(ARCHITECTURE_DOC.read_text())
    assert len(order) >= 8 and order[0][0] == "builder.errors", order
    assert upward_imports(import_graph(BUILDER), order) == []


def test_the_layer_check_finds_an_upward_import(tmp_path: Path) -> None:
    package = _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "def f() -> None:\n    from pkg.high import g\n",
        "pkg/high/__init__.py": "from pkg import low\n",
        "pkg/high/deep.py": "from pkg.low import f\n",
        "pkg/stray.py": "",
    })  # fmt: skip
    doc = "# x\n\n## Layers\n\n1. `builder.low` and more\n2. `builder.high`\n\n## Next\n"
    order = [[name.replace("builder", "pkg") for name in names] for names in layers(doc)]
    assert order == [["pkg.low"], ["pkg.high"]]
    assert upward_imports(import_graph(package), order) == [
        "pkg.low -> pkg.high", "pkg.stray: in no layer"]  # fmt: skip


# --- dump targets --------------------------------------------------------------------------

TARGET_NAMES = sorted(str(kind) for kind in target_kinds())
ENUM_STYLE_TARGETS = {name.upper() for name in TARGET_NAMES}
# A name joined to other words by "-" is a word of its own (ifupdown's `vlan-raw-device`).
TARGET_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?<![A-Za-z0-9]-)("
    + "|".join(TARGET_NAMES)
    + r")(?![A-Za-z0-9]|-[A-Za-z0-9])"
)


def target_spellings(path: Path) -> Iterator[str]:
    """Where `path` names a dump target in code: a string that is (or holds, as a key or
    path) a target's name, an import of one target's module, or an enum-style member."""
    for where, node, fact in _nodes(path, TARGET_PATTERN):
        if fact and isinstance(node, ast.Constant):
            yield f"{where}: string {node.value!r}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            for name in [node.module, *(f"{node.module}.{a.name}" for a in node.names)]:
                if name.startswith("builder.targets.") and name.split(".")[2] in TARGET_NAMES:
                    yield f"{where}: import {name}"
        elif isinstance(node, ast.Attribute) and node.attr in ENUM_STYLE_TARGETS:
            yield f"{where}: member .{node.attr}"


def test_no_dump_target_is_named_outside_its_module() -> None:
    found = []
    for path in modules():
        if path.parent != BUILDER / "targets":
            found += list(target_spellings(path))
    assert not found, "dump targets belong in builder/targets/:\n" + "\n".join(found)


def test_the_checker_sees_a_named_target(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may say nfs."""\n'
        "from builder.targets.ssh import SSH_KEY_PATH\n"
        'COSTS = {"raw": 1}\n'
        'HELP = "prose may mention a local disk"\n'
        "raw_bytes = b''\n"
        "DEFAULT = DumpTarget.LOCAL\n"
    )
    found = sorted(line.split(": ", 1)[1] for line in target_spellings(sample))
    assert found == ["import builder.targets.ssh", "import builder.targets.ssh.SSH_KEY_PATH",
                     "member .LOCAL", "string 'raw'"], found  # fmt: skip


# --- imports inside functions ----------------------------------------------------------------

# The start-up cost an import inside a function saves, named as `python -X importtime` gives it.
COST = re.compile(r"\d+(\.\d+)? ?ms\b")


def _comments(text: str) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return {token.start[0]: token.string for token in tokens if token.type == tokenize.COMMENT}


def _import_runs(node: ast.AST, in_function: bool = False) -> Iterator[list[ast.stmt]]:
    """Runs of consecutive import statements in function bodies (and their nested blocks)."""
    in_function = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    for name in ("body", "orelse", "finalbody", "handlers"):
        body = getattr(node, name, None)
        if not isinstance(body, list):
            continue
        run: list[ast.stmt] = []
        for statement in body:
            if in_function and isinstance(statement, ast.Import | ast.ImportFrom):
                run.append(statement)
                continue
            if run:
                yield run
                run = []
            yield from _import_runs(statement, in_function)
        if run:
            yield run


def uncommented_imports(path: Path) -> list[str]:
    """Imports inside functions with no comment naming the start-up cost they save: on the
    line(s) just above their run of imports, or at the end of one of its lines."""
    text = path.read_text()
    lines = text.splitlines()
    comments = _comments(text)
    found = []
    for run in _import_runs(ast.parse(text, str(path))):
        first, last = run[0].lineno, run[-1].end_lineno or run[-1].lineno
        above = []
        line = first - 1
        while line in comments and lines[line - 1].lstrip().startswith("#"):
            above.append(comments[line])
            line -= 1
        words = above + [comments[n] for n in range(first, last + 1) if n in comments]
        if not any(COST.search(comment) for comment in words):
            found += [f"{_relative(path)}:{statement.lineno}" for statement in run]
    return found


def test_imports_inside_functions_name_the_start_up_cost_they_save() -> None:
    found = [where for path in modules() for where in uncommented_imports(path)]
    assert not found, "say what importing at start-up would cost:\n" + "\n".join(found)


def test_the_import_check_finds_an_uncommented_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "def named() -> None:\n"
        "    # Imported here: json costs 2 ms at start-up.\n"
        "    import json\n"
        "    import csv\n"
        "def trailing() -> None:\n"
        "    import json  # 2 ms\n"
        "def bare() -> None:\n"
        "    x = 1\n"
        "    import json\n"
        "    if x:\n"
        "        # a reason without a cost\n"
        "        from json import (\n"
        "            dumps,\n"
        "        )\n"
    )
    assert uncommented_imports(sample) == ["sample.py:10", "sample.py:13"]
