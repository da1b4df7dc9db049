"""Programs in the capture initrd: busybox and its applets, the recipe's binaries with
their `#!` interpreters, and the shared libraries of all of them.

Nothing is executed: busybox's applets are read from its applet-name table,
an interpreter from the script's first line, libraries from the ELF
dynamic section (builder.image.libraries).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from builder.errors import RecipeError, SourceError
from builder.image.cache import default_cache_dir
from builder.image.initrd import InitrdPlan
from builder.image.libraries import library_closure, read_elf_info
from builder.image.sources import Root
from builder.recipe.model import Collector, DumpCompression, Recipe


def busybox_applets(binary: bytes) -> list[str]:
    """Applet names compiled into a busybox binary, read without running it.

    Busybox keeps its applet names as one sorted, NUL-separated table that
    starts with `[` and `[[`; reading it works for any architecture.

    >>> busybox_applets(b"\\x7fELF...[\\0[[\\0ash\\0cat\\0sh\\0\\xff\\0")
    ['[', '[[', 'ash', 'cat', 'sh']
    """
    start = binary.find(b"[\0[[\0")
    if start < 0:
        return []
    names: list[str] = []
    offset = start
    while True:
        end = binary.find(b"\0", offset)
        if end < 0:
            break
        name = binary[offset:end]
        if not name or not all(32 < byte < 127 and byte != ord("/") for byte in name):
            break
        names.append(name.decode())
        offset = end + 1
    return names if names == sorted(names) else []


def script_interpreter(data: bytes) -> tuple[str, str] | None:
    """The `#!` interpreter of a script and its first argument, or None.

    >>> script_interpreter(b"#!/usr/bin/env python3\\n")
    ('/usr/bin/env', 'python3')
    """
    if not data.startswith(b"#!"):
        return None
    line = data[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not line:
        return None
    return line[0], line[1] if len(line) > 1 else ""


@dataclass(frozen=True)
class Busybox:
    """The busybox of the initrd: where it really is, and its applets."""

    path: str
    applets: tuple[str, ...]


def plan_busybox(recipe: Recipe, root: Root, plan: InitrdPlan) -> Busybox:
    """Copy busybox (and the links on the way to it); refuse one without a shell."""
    busybox = recipe.initrd.busybox
    try:
        plan.copy_from(root, busybox)
    except SourceError as error:
        raise RecipeError(f"{recipe.path}: initrd.busybox: {error}") from None
    applets = busybox_applets(root.read_bytes(busybox))
    if "sh" not in applets:
        raise RecipeError(f"{recipe.path}: initrd.busybox: {busybox} has no sh applet")
    return Busybox(root.resolve(busybox).path, tuple(applets))


def check_applets(recipe: Recipe, busybox: Busybox, needed: Sequence[tuple[str, str]]) -> None:
    """Refuse a busybox without an applet the dump target runs (read from its applet
    table, so for any architecture): one line naming the recipe key that needs it."""
    for applet, key in needed:
        if applet not in busybox.applets:
            raise RecipeError(
                f"{recipe.path}: {key}: needs busybox's {applet} applet, and "
                f"initrd.busybox ({recipe.initrd.busybox}) has none (busybox 1.37 and "
                f"later have it: Debian 13's, with source.release = trixie and "
                f"initrd.busybox = /usr/bin/busybox)"
            )


def link_applets(plan: InitrdPlan, busybox: Busybox) -> None:
    """`/bin/<applet>` for every applet no real program took."""
    for applet in busybox.applets:
        link = f"/bin/{applet}"
        if not plan.has(link):
            plan.symlink(link, busybox.path, origin="busybox applet")


def plan_programs(
    recipe: Recipe,
    root: Root,
    plan: InitrdPlan,
    busybox: Busybox,
    requested: Sequence[tuple[str, str]],
) -> list[str]:
    """Copy `requested` (path, recipe key) programs and their `#!` interpreters; return the ELFs.

    An interpreter busybox provides (`/bin/sh`, `/usr/bin/env`) becomes a link
    to busybox; any other is copied from the source root like a binary.
    """
    programs: list[str] = []
    pending = [(path, key, False) for path, key in requested]
    seen: set[str] = set()
    while pending:
        path, key, interpreted = pending.pop(0)
        if path in seen:
            continue
        seen.add(path)
        if interpreted and posixpath.basename(path) in busybox.applets:
            if not plan.has(path):
                plan.symlink(path, busybox.path, origin="busybox applet")
            continue
        try:
            plan.copy_from(root, path)
            data = root.read_bytes(path)
        except SourceError as error:
            raise RecipeError(f"{recipe.path}: {key}: {error}") from None
        interpreter = script_interpreter(data)
        if interpreter is None:
            programs.append(path)
            continue
        program, argument = interpreter
        pending.append((program, key, True))
        if posixpath.basename(program) == "env" and argument and not argument.startswith("-"):
            pending.append((f"/usr/bin/{argument}", key, True))
    return programs


def recipe_programs(recipe: Recipe) -> list[tuple[str, str]]:
    """initrd.binaries and initrd.extra_binaries as (path, "key: item N")."""
    return [
        *((path, f"initrd.binaries: item {index}")
          for index, path in enumerate(recipe.initrd.binaries)),
        *((path, f"initrd.extra_binaries: item {index}")
          for index, path in enumerate(recipe.initrd.extra_binaries)),
    ]  # fmt: skip


def plan_libraries(recipe: Recipe, root: Root, plan: InitrdPlan, programs: Sequence[str],
                   key: str) -> None:  # fmt: skip
    """Copy the dynamic loader and every shared library `programs` need."""
    for library in library_closure(
        root, programs, recipe.target.arch, key, default_cache_dir() / "elf"
    ):
        plan.copy_from(root, library)


def check_collector(recipe: Recipe, root: Root) -> None:
    """Refuse a page compression the recipe's makedumpfile was built without.

    Feature detection without running the (maybe foreign) binary: makedumpfile
    links libzstd only when built with zstd support.
    """
    dump = recipe.dump
    if dump.collector is not Collector.MAKEDUMPFILE or dump.compression is not DumpCompression.ZSTD:
        return
    binary = next(path for path in recipe.initrd.binaries if path.endswith("/makedumpfile"))
    info = read_elf_info(root.read_bytes(binary), binary, default_cache_dir() / "elf")
    if info is None or not any(name.startswith("libzstd.so") for name in info.needed):
        raise RecipeError(
            f"{recipe.path}: dump.compression: {binary} in {root.description} is built "
            "without zstd (it does not link libzstd); use lzo or zlib"
        )
