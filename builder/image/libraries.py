"""The shared-library closure of ELF programs, found inside a root.

Nothing is executed: DT_NEEDED, DT_RUNPATH/DT_RPATH and PT_INTERP are read
with pyelftools and looked up the way the dynamic loader would, so this
works for another architecture's root as well as for the host.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import SourceError
from builder.image.cache import store_cache_entry
from builder.image.sources import Root

if TYPE_CHECKING:
    from elftools.elf.dynamic import DynamicTag

# e_machine per target architecture, to refuse a binary built for another one.
ELF_MACHINE = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}
# Debian's multiarch directories, which its loader searches without a cache.
MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
# Bump when ElfInfo or the way it is read changes: cached facts are keyed by it.
INFO_FORMAT = 1


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader needs to know of one ELF file."""

    machine: str
    interpreter: str
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    rpath: tuple[str, ...]


def read_elf_info(data: bytes, name: str, cache_dir: Path | None = None) -> ElfInfo | None:
    """Dynamic-linking facts of an ELF file, or None if `data` is not ELF.

    With `cache_dir`, the facts are remembered by the file's sha256, so a warm
    build neither parses the file nor imports pyelftools (a tenth of a
    second of start-up). The cache is an optimisation only: anything
    unreadable in it is ignored and recomputed.
    """
    if not data.startswith(b"\x7fELF"):
        return None
    if cache_dir is None:
        return _parse_elf_info(data, name)
    digest = hashlib.sha256(data).hexdigest()
    cache_file = cache_dir / f"{INFO_FORMAT}-{digest}.json"
    try:
        row = json.loads(cache_file.read_bytes())
        return ElfInfo(
            str(row["machine"]),
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
    # Imported here: only a build that meets an ELF file for the first time needs it.
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import InterpSegment

    try:
        elf = ELFFile(io.BytesIO(data))
        interpreter = ""
        needed: list[str] = []
        runpath: list[str] = []
        rpath: list[str] = []
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interpreter = segment.get_interp_name()
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                # pyelftools resolves a string tag's value into an attribute named after it.
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(_tag_string(tag, "needed"))
                elif tag.entry.d_tag == "DT_RUNPATH":
                    runpath.extend(_tag_string(tag, "runpath").split(":"))
                elif tag.entry.d_tag == "DT_RPATH":
                    rpath.extend(_tag_string(tag, "rpath").split(":"))
        return ElfInfo(elf["e_machine"], interpreter, tuple(needed), tuple(runpath), tuple(rpath))
    except (ELFError, ValueError, KeyError, OSError) as error:
        raise SourceError(f"{name}: corrupt ELF file ({error})") from None


def _tag_string(tag: DynamicTag, attribute: str) -> str:
    return str(getattr(tag, attribute))


def _default_dirs(root: Root, arch: str) -> list[str]:
    triplet = MULTIARCH[arch]
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
    root: Root, programs: Sequence[str], arch: str, key: str, cache_dir: Path | None = None
) -> list[str]:
    """Paths, in `root`, of the interpreter and every library `programs` need.

    `key` names the recipe key that listed the programs, for errors. Paths
    are as found (before symlinks), so soname links stay links in the initrd.
    `cache_dir` remembers what each ELF file needs (see `read_elf_info`).

    >>> library_closure(root, ["/usr/bin/makedumpfile"], "x86_64", "b")  # doctest: +SKIP
    ['/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/libc.so.6', ...]
    """
    default_dirs = _default_dirs(root, arch)
    wanted_machine = ELF_MACHINE[arch]
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
        if info.machine != wanted_machine:
            raise SourceError(
                f"{key}: {path} is built for {info.machine}, not {arch} ({wanted_machine})"
            )
        if info.interpreter:
            if not root.exists(info.interpreter):
                raise SourceError(
                    f"{key}: {path} needs interpreter {info.interpreter}, "
                    f"missing in {root.description}"
                )
            if info.interpreter not in found:
                found.append(info.interpreter)
        origin = posixpath.dirname(path)
        search = [_expand_origin(entry, origin) for entry in info.rpath if not info.runpath]
        search += [_expand_origin(entry, origin) for entry in info.runpath]
        search += default_dirs
        for soname in info.needed:
            library = _find_library(root, soname, search)
            if library is None:
                raise SourceError(
                    f"{key}: {soname}, needed by {path} (for {requested_by}), "
                    f"is not in {root.description}"
                )
            if library not in found:
                found.append(library)
            queue.append((library, requested_by))
    return found


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
