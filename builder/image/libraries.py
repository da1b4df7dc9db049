"""The shared-library closure of ELF programs, found inside a root.

Nothing is executed: DT_NEEDED, DT_RUNPATH/DT_RPATH and PT_INTERP are read
through `builder.binfmt.elf` and looked up the way the dynamic loader would,
so this works for another architecture's root as well as for the host.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder.arch import Arch, ArchInfo, arch_info, elf_machine_name
from builder.binfmt.elf import ELF_MAGIC, ElfFile
from builder.errors import MissingLibraryError, SourceError
from builder.image.cache import load_json_entry, store_cache_entry
from builder.image.sources import Root

# Bump when ElfInfo or the way it is read changes: cached facts are keyed by it.
# 2: machine is e_machine as a number, with the byte order beside it.
INFO_FORMAT = 2


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader needs to know of one ELF file."""

    machine: int  # e_machine
    big_endian: bool
    interpreter: str
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    rpath: tuple[str, ...]


def read_elf_info(data: bytes, name: str, cache_dir: Path | None = None) -> ElfInfo | None:
    """Dynamic-linking facts of an ELF file, or None if `data` is not ELF.

    With `cache_dir`, the facts are remembered by the file's sha256, so a warm
    build does not parse the file again. The cache is an optimisation only:
    anything unreadable in it is ignored and recomputed.

    >>> from builder.binfmt.elf import _tiny_elf
    >>> read_elf_info(_tiny_elf(), "static")
    ElfInfo(machine=62, big_endian=False, interpreter='', needed=(), runpath=(), rpath=())
    >>> read_elf_info(b"#!/bin/sh\\n", "script") is None
    True
    """
    if not data.startswith(ELF_MAGIC):
        return None
    if cache_dir is None:
        return _parse_elf_info(data, name)
    digest = hashlib.sha256(data).hexdigest()
    cache_file = cache_dir / f"{INFO_FORMAT}-{digest}.json"
    try:
        row: Any = load_json_entry(cache_file)
        return ElfInfo(
            int(row["machine"]),
            bool(row["big_endian"]),
            str(row["interpreter"]),
            tuple(str(item) for item in row["needed"]),
            tuple(str(item) for item in row["runpath"]),
            tuple(str(item) for item in row["rpath"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    info = _parse_elf_info(data, name)
    store_cache_entry(cache_file, json.dumps(asdict(info)).encode())
    return info


def _parse_elf_info(data: bytes, name: str) -> ElfInfo:
    elf = ElfFile(data, name, SourceError)
    dynamic = elf.dynamic()
    return ElfInfo(
        elf.machine,
        elf.big_endian,
        elf.interpreter(),
        dynamic.needed,
        dynamic.runpath,
        dynamic.rpath,
    )


def _default_dirs(root: Root, target: ArchInfo) -> list[str]:
    # Debian's multiarch directories, which its loader searches without a cache.
    triplet = target.multiarch
    dirs = [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    dirs += _ld_so_conf_dirs(root, "/etc/ld.so.conf", depth=0)
    dirs += ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    return list(dict.fromkeys(dirs))


def _ld_so_conf_dirs(root: Root, path: str, depth: int) -> list[str]:
    if depth > 8:
        return []
    try:
        text = root.read_bytes(path).decode("utf-8", "replace")
    except SourceError:
        return []
    dirs: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("include "):
            pattern = line.split(None, 1)[1]
            if not pattern.startswith("/"):
                pattern = posixpath.join(posixpath.dirname(path), pattern)
            for included in root.glob(pattern):
                dirs += _ld_so_conf_dirs(root, included, depth + 1)
        elif line.startswith("/"):
            dirs.append(line)
    return dirs


def _expand_origin(entry: str, origin: str) -> str:
    return entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)


def library_closure(
    root: Root,
    programs: Sequence[str],
    arch: Arch | str,
    key: str,
    cache_dir: Path | None = None,
) -> list[str]:
    """Paths, in `root`, of the interpreter and every library `programs` need.

    `key` names the recipe key that listed the programs, for errors. Paths
    are as found (before symlinks), so soname links stay links in the initrd.
    `cache_dir` remembers what each ELF file needs (see `read_elf_info`).

    A static program needs nothing, but only runs on its own architecture:

    >>> import tempfile
    >>> from builder.binfmt.elf import _tiny_elf
    >>> from builder.image.sources import DirectoryRoot
    >>> sysroot = Path(tempfile.mkdtemp())
    >>> _ = (sysroot / "init").write_bytes(_tiny_elf())
    >>> library_closure(DirectoryRoot(sysroot), ["/init"], "x86_64", "initrd.binaries")
    []
    >>> library_closure(DirectoryRoot(sysroot), ["/init"], "aarch64", "initrd.binaries")
    Traceback (most recent call last):
    ...
    builder.errors.SourceError: initrd.binaries: /init is built for x86_64 (e_machine 62), ...
    """
    target = arch_info(arch)
    default_dirs = _default_dirs(root, target)
    found: list[str] = []
    seen_objects: set[str] = set()
    queue: list[tuple[str, str]] = [(program, program) for program in programs]
    while queue:
        path, requested_by = queue.pop(0)
        real = root.resolve(path).path
        if real in seen_objects:
            continue
        seen_objects.add(real)
        info = read_elf_info(root.read_bytes(path), f"{root.description}:{path}", cache_dir)
        if info is None:
            continue
        _check_runs(root, info, path, target, key)
        if info.interpreter and info.interpreter not in found:
            found.append(info.interpreter)
        search = _search_dirs(info, posixpath.dirname(path)) + default_dirs
        for soname in info.needed:
            library = _find_library(root, soname, search)
            if library is None:
                raise MissingLibraryError(
                    f"{key}: {soname}, needed by {path} (for {requested_by}), "
                    f"is not in {root.description}",
                    soname,
                )
            if library not in found:
                found.append(library)
            queue.append((library, requested_by))
    return found


def _check_runs(root: Root, info: ElfInfo, path: str, target: ArchInfo, key: str) -> None:
    """Refuse a program built for another architecture, or whose interpreter is missing."""
    if (info.machine, info.big_endian) != (target.elf_machine, target.big_endian):
        raise SourceError(f"{key}: {path} is built for {_machine_text(info)}, not {target.arch}")
    if info.interpreter and not root.exists(info.interpreter):
        raise SourceError(
            f"{key}: {path} needs interpreter {info.interpreter}, missing in {root.description}"
        )


def _search_dirs(info: ElfInfo, origin: str) -> list[str]:
    """DT_RPATH (ignored when DT_RUNPATH is present), then DT_RUNPATH, with $ORIGIN expanded."""
    search = [_expand_origin(entry, origin) for entry in info.rpath if not info.runpath]
    return search + [_expand_origin(entry, origin) for entry in info.runpath]


def _machine_text(info: ElfInfo) -> str:
    """The architecture an ELF file is built for, as a message says it.

    >>> _machine_text(ElfInfo(183, False, "", (), (), ()))
    'aarch64 (e_machine 183)'
    """
    name = elf_machine_name(info.machine, big_endian=info.big_endian)
    return f"{name} (e_machine {info.machine})"


def _find_library(root: Root, soname: str, search: Sequence[str]) -> str | None:
    if "/" in soname:
        return soname if root.exists(soname) else None
    for directory in search:
        if not directory:
            continue
        candidate = posixpath.join(directory, soname)
        if root.exists(candidate):
            return candidate
    return None
