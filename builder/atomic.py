"""Writing outputs without harm: whole or not at all, and never over what we did not make.

Every command that writes (build, layout, restore) goes through here:

- `replace_directory` fills a staging directory beside the output, fsyncs it,
  then swaps it in with one `renameat2(RENAME_EXCHANGE)`, so at every moment
  the output path holds either the complete old directory or the complete new
  one; a SIGKILL leaves at most a staging directory, which the next run
  removes. It replaces only an empty directory or an earlier kdump-build
  output: one holding `MARKER` and nothing its inventory does not list (a
  file the user added to an output of ours is not replaced with it), or a
  legacy output (the product that writes it says how to know one: a
  `LegacyOutput`; this module knows no product's file names). Anything else
  is refused with an `OutputError` and left untouched.
- `write_new_file` writes a file that must not exist yet (RENAME_NOREPLACE).

Only entries whose names carry `STAGING_INFIX` are ever removed, and only
when this user owns them and nobody else can write them (a directory others
can write may hold anyone's look-alike): directories holding our marker (or
nothing at all), and the temporary files of `write_new_file` for the same
destination. Removal goes through directory descriptors opened with
O_NOFOLLOW (openat/unlinkat), never by path, so a symlink swapped in meanwhile
leads nowhere. The marker of a staging directory is removed last, so a run
killed while removing one leaves it recognisable.

The fsyncs matter: after a kernel panic the page cache is gone, and without
them the renamed directory could hold empty files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import OutputError
from builder.locks import locked_directory

# Present in every directory kdump-build writes: this first line, then the
# inventory of every entry the run wrote (one relative path a line).
MARKER = ".kdump-build"
MARKER_TEXT = b"written by kdump-build; this directory is replaced whole by the next run\n"
STAGING_INFIX = ".kdump-build-staging."
# Where the fallback swap (no RENAME_EXCHANGE) keeps the old output meanwhile.
_PREVIOUS = "previous"
_AT_FDCWD = -100
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


@dataclass(frozen=True)
class LegacyOutput:
    """What an output of a product written before the marker's inventory existed looks like:
    the product's file names, the subdirectories among them (holding only regular files),
    and how to recognise one of its outputs (`recognise(path)`)."""

    names: frozenset[str]
    subdirs: frozenset[str]
    recognise: Callable[[Path], bool]


def _renameat2(source: Path, target: Path, flags: int) -> None:
    """renameat2(2) through libc; raises OSError (ENOSYS/EINVAL where unsupported)."""
    libc = ctypes.CDLL(None, use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library")
    result = function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


def _tree_names(top: Path) -> list[str]:
    """Every entry below `top` but the marker, relative; directories end in '/'.

    >>> import tempfile
    >>> top = Path(tempfile.mkdtemp()); (top / "segments").mkdir()
    >>> _ = (top / "segments" / "00-kernel.bin").write_bytes(b""); _tree_names(top)
    ['segments/', 'segments/00-kernel.bin']
    """
    names: list[str] = []
    for directory, dirs, files in os.walk(top):
        base = Path(directory).relative_to(top)
        for name in dirs:
            names.append(f"{base / name}/")
        names += [str(base / name) for name in files]
    return sorted(name for name in names if name != MARKER)


def _write_marker(staging: Path) -> None:
    """The marker: its fixed first line, then the inventory of what this run wrote."""
    lines = [MARKER_TEXT.decode().rstrip("\n"), *_tree_names(staging)]
    (staging / MARKER).write_text("\n".join(lines) + "\n")


def _inventory(path: Path) -> frozenset[str] | None:
    """The names a marker says its run wrote; None without a marker or an inventory in it."""
    marker = path / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    lines = marker.read_bytes().decode(errors="replace").splitlines()
    return frozenset(lines[1:]) or None


def foreign_entry(path: Path, legacy: LegacyOutput | None = None) -> str | None:
    """The first entry below directory `path` that kdump-build did not write, or None.

    A marker with an inventory lists what its run wrote; without one (outputs
    written before the inventory existed) only the product's `legacy` names,
    and regular files in its subdirectories, are ours.

    >>> import tempfile
    >>> mine = Path(tempfile.mkdtemp()); _ = (mine / "vmlinuz").write_bytes(b"")
    >>> foreign_entry(mine, LegacyOutput(frozenset({"vmlinuz"}), frozenset(), bool)) is None
    True
    >>> _ = (mine / "notes.txt").write_text("mine"); foreign_entry(mine)
    'notes.txt'
    """
    inventory = _inventory(path)
    if inventory is not None:
        return next((name for name in _tree_names(path) if name not in inventory), None)
    names = legacy.names if legacy is not None else frozenset()
    for entry in sorted(path.iterdir()):
        name = entry.name
        if name == MARKER:
            continue
        if name not in names or entry.is_symlink():
            return name
        if legacy is not None and name in legacy.subdirs:
            if not entry.is_dir():
                return name
            for inner in sorted(entry.iterdir()):
                if inner.is_symlink() or not inner.is_file():
                    return f"{name}/{inner.name}"
        elif not entry.is_file():
            return name
    return None


def is_our_output(path: Path, legacy: LegacyOutput | None = None) -> bool:
    """Whether `path` is a directory kdump-build wrote (so it may be replaced).

    >>> import tempfile
    >>> mine = Path(tempfile.mkdtemp()); _ = (mine / MARKER).write_bytes(MARKER_TEXT)
    >>> is_our_output(mine), is_our_output(Path(tempfile.mkdtemp()))
    (True, False)
    """
    if path.is_symlink() or not path.is_dir():
        return False
    if foreign_entry(path, legacy) is not None:
        return False
    marker = path / MARKER
    if marker.is_file() and not marker.is_symlink():
        return True
    return legacy is not None and legacy.recognise(path)


def _check_replaceable(outdir: Path, legacy: LegacyOutput | None) -> bool:
    """True when `outdir` exists and may be replaced; False when it does not exist."""
    if outdir.is_symlink():
        raise OutputError(f"{outdir}: is a symbolic link; give the directory itself")
    if not outdir.exists():
        return False
    if not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory; refusing to replace it")
    try:
        empty = not any(outdir.iterdir())
        ours = empty or is_our_output(outdir, legacy)
        foreign = None if ours else foreign_entry(outdir, legacy)
    except OSError as error:
        raise OutputError(f"{outdir}: cannot read it ({error.strerror})") from None
    if not ours:
        found = f"found {foreign}; " if foreign is not None else ""
        raise OutputError(
            f"{outdir}: holds files kdump-build did not write; refusing to replace it "
            f"({found}choose an empty or new directory)"
        )
    return True


def _staging_prefix(target: Path) -> str:
    return f".{target.name}{STAGING_INFIX}"


def remove_leftovers(outdir: Path, legacy: LegacyOutput | None = None) -> None:
    """Clean what an interrupted run left beside `outdir`.

    Only directories this user owns and nobody else can write are touched,
    through directory descriptors opened without following symlinks: a
    staging directory holding our marker is removed, an empty one (killed
    before its marker was written) too. When `outdir` itself is missing and a
    fallback swap was interrupted, the old output is put back first.
    """
    prefix = _staging_prefix(outdir)
    try:
        parent = os.open(outdir.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for name in sorted(os.listdir(parent)):
            if not name.startswith(prefix):
                continue
            with contextlib.suppress(OSError):
                _remove_leftover(parent, name, outdir, legacy)
    finally:
        os.close(parent)


def _remove_leftover(parent: int, name: str, outdir: Path, legacy: LegacyOutput | None) -> None:
    staging = _open_own_directory(parent, name)
    if staging is None:
        return
    try:
        if not _holds_marker(staging):
            os.rmdir(name, dir_fd=parent)  # only ever succeeds on an empty directory
            return
        _restore_interrupted_swap(parent, staging, outdir, legacy)
        _remove_own_tree(staging)
        os.rmdir(name, dir_fd=parent)
    finally:
        os.close(staging)


def _open_own_directory(parent: int, name: str, *, private: bool = True) -> int | None:
    """A descriptor of directory `name` in `parent` when this user owns it and (`private`)
    nobody else may write it, so nobody else can have put anything in it; None otherwise.

    Below such a directory, `private=False`: everything is done through descriptors
    and never follows a symlink, so a directory the umask left group-writable is safe
    to empty."""
    try:
        descriptor = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent)
    except OSError:  # a symlink (ELOOP), not a directory, gone
        return None
    info = os.fstat(descriptor)
    if info.st_uid != os.geteuid() or (private and info.st_mode & 0o022):
        os.close(descriptor)
        return None
    return descriptor


def _holds_marker(directory: int) -> bool:
    try:
        info = os.stat(MARKER, dir_fd=directory, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode)


def _restore_interrupted_swap(parent: int, staging: int, outdir: Path,
                              legacy: LegacyOutput | None) -> None:  # fmt: skip
    with contextlib.suppress(OSError):
        os.stat(outdir.name, dir_fd=parent, follow_symlinks=False)
        return  # the output is there: nothing to put back
    previous = _open_own_directory(staging, _PREVIOUS)
    if previous is None:
        return
    os.close(previous)
    # Through the descriptor of the staging directory checked above: only we can
    # change what is below it.
    if is_our_output(Path(f"/proc/self/fd/{staging}") / _PREVIOUS, legacy):
        os.rename(_PREVIOUS, outdir.name, src_dir_fd=staging, dst_dir_fd=parent)


def _remove_own_tree(directory: int) -> None:
    """Empty the directory open as `directory`, by descriptor, its marker last."""
    names = sorted(os.listdir(directory))
    for name in (
        *[name for name in names if name != MARKER],
        *([MARKER] if MARKER in names else []),
    ):
        info = os.stat(name, dir_fd=directory, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=directory)
            continue
        inner = _open_own_directory(directory, name, private=False)
        if inner is None:
            raise OSError(errno.EPERM, "not ours", name)
        try:
            _remove_own_tree(inner)
        finally:
            os.close(inner)
        os.rmdir(name, dir_fd=directory)


def remove_staging(staging: Path) -> None:
    """Remove a staging directory of ours (if it is still there), its marker last."""
    with contextlib.suppress(OSError):
        remove_tree(staging)


def remove_tree(path: Path) -> None:
    """Remove directory `path` and what is below it, through descriptors that never follow a
    symlink, only when this user owns it and nobody else can write it (OSError otherwise)."""
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        directory = _open_own_directory(parent, path.name)
        if directory is None:
            raise OSError(errno.EPERM, "not a directory this user owns alone", str(path))
        try:
            _remove_own_tree(directory)
        finally:
            os.close(directory)
        os.rmdir(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def _fsync_tree(top: Path) -> None:
    for directory, _, files in os.walk(top):
        for name in files:
            descriptor = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _fsync_directory(Path(directory))


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _new_staging(outdir: Path) -> Path:
    try:
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(outdir), dir=outdir.parent))
        (staging / MARKER).write_bytes(MARKER_TEXT)
    except OSError as error:
        raise OutputError(f"{outdir.parent}: cannot write there ({error.strerror})") from None
    return staging


def _make_parent(path: Path) -> None:
    """Create the directories above `path`; an error names the part that stands in the way."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next(p for p in path.parents if p.exists() or p.is_symlink())
        raise OutputError(f"{blocking}: is not a directory (on the way to {path})") from None
    except OSError as error:
        raise OutputError(f"{path.parent}: cannot create it ({error.strerror})") from None


def replace_directory(outdir: Path, fill: Callable[[Path], None], *, mode: int = 0o755,
                      legacy: LegacyOutput | None = None) -> None:  # fmt: skip
    """Make `outdir` the directory `fill(staging)` writes, atomically, or refuse.

    `fill` writes into an empty staging directory that already holds the
    marker. An error in `fill` leaves `outdir` as it was and no staging
    directory behind. Runs writing beside each other take turns (a lock on
    the parent directory), so one never cleans up another's live staging.
    `legacy` recognises the product's outputs from before the marker.
    """
    outdir = outdir.absolute()
    _make_parent(outdir)
    try:
        with locked_directory(outdir.parent):
            _replace_locked(outdir, fill, mode, legacy)
    except OSError as error:  # the lock itself
        raise OutputError(f"{outdir.parent}: cannot lock it ({error.strerror})") from None


def _replace_locked(outdir: Path, fill: Callable[[Path], None], mode: int,
                    legacy: LegacyOutput | None) -> None:  # fmt: skip
    remove_leftovers(outdir, legacy)
    exists = _check_replaceable(outdir, legacy)
    staging = _new_staging(outdir)
    try:
        fill(staging)
        _write_marker(staging)
        os.chmod(staging, mode)
        _fsync_tree(staging)
        if exists:
            _exchange(staging, outdir)
        else:
            os.rename(staging, outdir)
        _fsync_directory(outdir.parent)
    except OSError as error:
        remove_staging(staging)
        raise OutputError(f"{error.filename or outdir}: {error.strerror}") from None
    except BaseException:
        remove_staging(staging)
        raise
    if exists:  # after the exchange the staging name holds the old output
        remove_staging(staging)


def _exchange(staging: Path, outdir: Path) -> None:
    """Swap `staging` and `outdir`; where the filesystem cannot, rename with a short window."""
    if not (outdir / MARKER).exists():
        # A legacy or empty output: mark it ours, so a leftover copy of it is cleaned up too.
        (outdir / MARKER).write_bytes(MARKER_TEXT)
    try:
        _renameat2(staging, outdir, _RENAME_EXCHANGE)
        return
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # No RENAME_EXCHANGE here (some network filesystems): two renames. A run
    # killed between them leaves the old output in aside/previous, which the
    # next run's remove_leftovers puts back.
    aside = _new_staging(outdir)
    os.rename(outdir, aside / _PREVIOUS)
    try:
        os.rename(staging, outdir)
    except OSError:
        os.rename(aside / _PREVIOUS, outdir)
        raise
    remove_staging(aside)


def _remove_leftover_files(path: Path) -> None:
    """Temporary files an interrupted `write_new_file` of `path` left beside it."""
    prefix = _staging_prefix(path)
    with contextlib.suppress(OSError):
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in os.listdir(parent):
                if not name.startswith(prefix):
                    continue
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                    os.unlink(name, dir_fd=parent)
        finally:
            os.close(parent)


def write_new_file(path: Path, chunks: Iterable[bytes] | Callable[[int], None], *,
                   mode: int = 0o644) -> None:  # fmt: skip
    """Create `path`, which must not exist, from `chunks` (or `writer(fd)`), whole or not at all."""
    path = path.absolute()
    if path.exists() or path.is_symlink():
        raise OutputError(f"{path}: already exists; refusing to overwrite it")
    _remove_leftover_files(path)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=_staging_prefix(path), dir=path.parent)
    except OSError as error:
        raise OutputError(f"{path.parent}: cannot write there ({error.strerror})") from None
    try:
        if callable(chunks):
            chunks(descriptor)
        else:
            for chunk in chunks:
                os.write(descriptor, chunk)
        os.fsync(descriptor)
        os.close(descriptor)
        descriptor = -1
        os.chmod(temporary, mode)
        _rename_noreplace(Path(temporary), path)
        _fsync_directory(path.parent)
    except OSError as error:
        raise OutputError(f"{error.filename or path}: {error.strerror}") from None
    finally:
        if descriptor >= 0:
            os.close(descriptor)
        Path(temporary).unlink(missing_ok=True)


def _rename_noreplace(source: Path, target: Path) -> None:
    try:
        _renameat2(source, target, _RENAME_NOREPLACE)
    except OSError as error:
        if error.errno == errno.EEXIST:
            raise OutputError(f"{target}: already exists; refusing to overwrite it") from None
        if error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        os.link(source, target)  # fails with EEXIST rather than replacing
