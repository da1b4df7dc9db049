"""What root may run and read at boot: only files that nobody but root can change.

The recipe `enable` records, and the executable the unit and the hooks run,
are used again by root at every boot and kernel installation. If another user
could change the file, or any directory above it (and so rename it away and
put their own in its place), they would choose what root builds into the
capture initrd or what root runs.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import HostError

if TYPE_CHECKING:
    from builder.recipe.model import Recipe


def _why_untrusted(path: Path, info: os.stat_result) -> str | None:
    if info.st_uid != 0:
        return f"is owned by uid {info.st_uid}, not root"
    if stat.S_ISLNK(info.st_mode):
        return None  # a symlink's own mode means nothing; its target is checked too
    if stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX:
        return None  # sticky (as /tmp): only root may rename or remove root's entries
    if info.st_mode & 0o020:
        return "is writable by its group"
    if info.st_mode & 0o002:
        return "is writable by everyone"
    return None


def _chain(path: Path) -> list[Path]:
    """`path` and every directory above it, as given and as symlinks resolve it."""
    literal = path.absolute()
    real = Path(os.path.realpath(literal))
    return list(dict.fromkeys([literal, *literal.parents, real, *real.parents]))


def require_root_only(path: Path, what: str) -> None:
    """Refuse `path` (a recipe, an executable) when anyone but root can change it.

    A directory everyone may write is accepted with its sticky bit (as /tmp):
    there nobody else can rename or remove root's entries.

    >>> require_root_only(Path("/usr/bin/env"), "an executable")
    """
    for entry in _chain(path):
        try:
            info = os.lstat(entry)
        except OSError as error:
            raise HostError(f"{path}: cannot check {entry} ({error.strerror})") from None
        why = _why_untrusted(entry, info)
        if why is not None:
            place = "it" if entry == path.absolute() else f"{entry}"
            raise HostError(
                f"{path}: refusing {what} that someone other than root can change ({place} {why})"
            )


def require_trusted_recipe(recipe: Recipe) -> None:
    """The recipe and the host files it names (initrd.extra_files from the host or beside
    the recipe, source.package_files, the dump.pre and dump.post hooks, the files the
    dump targets read, such as a key) are root's alone; a `HostError` naming the first
    that is not."""
    require_root_only(recipe.path, "a recipe")
    for item in recipe.initrd.extra_files:
        _, _, source = item.partition("=")
        kind, _, name = source.partition(":") if source else ("root", "", "")
        if kind == "recipe":
            require_root_only(recipe.relative(name), f"a file {recipe.path} includes")
        elif kind == "host":
            require_root_only(Path(name), f"a file {recipe.path} includes")
    for name in recipe.source.package_files:
        require_root_only(recipe.relative(name), f"a package {recipe.path} includes")
    for name in (*recipe.dump.pre, *recipe.dump.post):  # run by the capture as root
        require_root_only(recipe.relative(name), f"a hook {recipe.path} includes")
    require_trusted_target_files(recipe)


def require_trusted_target_files(recipe: Recipe) -> None:
    """The host files the dump targets read (an ssh key, known_hosts) are root's alone."""
    for attempt in recipe.dump.attempts():  # dump.target and every dump.fallback
        for key, name in attempt.target.host_files(attempt, recipe.machine_root):
            # As named, not resolved: a symlink on the way is checked where it lies too.
            named = recipe.path.absolute().parent / name
            require_root_only(named, f"a file {recipe.path} names in {key}")


def require_trusted_program() -> None:
    """The Python, the console script and the package the unit and the hooks will run."""
    package = Path(__file__).resolve().parents[1]  # builder/
    python = Path(sys.executable)
    script = python.parent / "kdump-build"
    for program in (python, *([script] if script.is_file() else [])):
        require_root_only(program, "an executable")
    require_root_only(package, "the kdump-build package")
