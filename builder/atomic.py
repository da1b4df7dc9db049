"""Writing outputs without harm: whole or not at all, and never over what we did not make.

Every command that writes (build, layout, restore) goes through here:

- `replace_directory` fills a staging directory beside the output, then swaps
  it in with one `renameat2(RENAME_EXCHANGE)`, so at every moment the output
  path holds either the complete old directory or the complete new one; a
  SIGKILL leaves at most a staging directory, which the next run removes.
  It replaces only an empty directory or an earlier kdump-build output (one
  holding `MARKER`, or a manifest.json of ours and nothing foreign); anything
  else is refused with an `OutputError` and left untouched.
- `write_new_file` writes a file that must not exist yet (RENAME_NOREPLACE).

Only entries whose names carry `STAGING_INFIX`, and which hold our marker,
are ever removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from builder.errors import OutputError

# Present in every directory kdump-build writes; its bytes never change.
MARKER = ".kdump-build"
MARKER_TEXT = b"written by kdump-build; this directory is replaced whole by the next run\n"
STAGING_INFIX = ".kdump-build-staging."
# Files an output written before the marker existed may hold.
_LEGACY_OUTPUT_FILES = frozenset(
    {"initrd.img", "vmlinuz", "cmdline.txt", "manifest.json", "fit.json", "layout.json", "segments"}
)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


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


def is_our_output(path: Path) -> bool:
    """Whether `path` is a directory kdump-build wrote (so it may be replaced).

    >>> import tempfile
    >>> mine = Path(tempfile.mkdtemp()); _ = (mine / MARKER).write_bytes(MARKER_TEXT)
    >>> is_our_output(mine), is_our_output(Path(tempfile.mkdtemp()))
    (True, False)
    """
    if path.is_symlink() or not path.is_dir():
        return False
    if (path / MARKER).is_file():
        return True
    return _is_legacy_output(path)


def _is_legacy_output(path: Path) -> bool:
    """An output from before the marker: our manifest and only our file names."""
    names = {entry.name for entry in path.iterdir()}
    if "manifest.json" not in names or not names <= _LEGACY_OUTPUT_FILES:
        return False
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"recipe", "kernel", "initrd", "members"} <= set(manifest)


def _check_replaceable(outdir: Path) -> bool:
    """True when `outdir` exists and may be replaced; False when it does not exist."""
    if outdir.is_symlink():
        raise OutputError(f"{outdir}: is a symbolic link; give the directory itself")
    if not outdir.exists():
        return False
    if not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory; refusing to replace it")
    try:
        empty = not any(outdir.iterdir())
    except OSError as error:
        raise OutputError(f"{outdir}: cannot read it ({error.strerror})") from None
    if not empty and not is_our_output(outdir):
        raise OutputError(
            f"{outdir}: holds files kdump-build did not write; refusing to replace it "
            "(choose an empty or new directory)"
        )
    return True


def remove_leftovers(outdir: Path) -> None:
    """Remove staging directories an interrupted run left beside `outdir`."""
    parent = outdir.parent
    prefix = f".{outdir.name}{STAGING_INFIX}"
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            ours = entry.name.startswith(prefix) and not entry.is_symlink()
            if ours and entry.is_dir() and (entry / MARKER).is_file():
                shutil.rmtree(entry, ignore_errors=True)


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


def replace_directory(outdir: Path, fill: Callable[[Path], None], *, mode: int = 0o755) -> None:
    """Make `outdir` the directory `fill(staging)` writes, atomically, or refuse.

    `fill` writes into an empty staging directory that already holds the
    marker. An error in `fill` leaves `outdir` as it was and no staging
    directory behind.
    """
    outdir = outdir.absolute()
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{outdir.parent}: cannot create it ({error.strerror})") from None
    exists = _check_replaceable(outdir)
    remove_leftovers(outdir)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}{STAGING_INFIX}", dir=outdir.parent))
    except OSError as error:
        raise OutputError(f"{outdir.parent}: cannot write there ({error.strerror})") from None
    try:
        (staging / MARKER).write_bytes(MARKER_TEXT)
        fill(staging)
        os.chmod(staging, mode)
        _fsync_tree(staging)
        if exists:
            _exchange(staging, outdir)
        else:
            os.rename(staging, outdir)
        _fsync_directory(outdir.parent)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"{error.filename or outdir}: {error.strerror}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # After the exchange the staging name holds the old output.
    shutil.rmtree(staging, ignore_errors=True)


def _exchange(staging: Path, outdir: Path) -> None:
    """Swap `staging` and `outdir`; where the filesystem cannot, rename with a short window."""
    if not (outdir / MARKER).exists():
        # A legacy output: mark it ours, so a leftover copy of it is cleaned up too.
        (outdir / MARKER).write_bytes(MARKER_TEXT)
    try:
        _renameat2(staging, outdir, _RENAME_EXCHANGE)
        return
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # No RENAME_EXCHANGE here (some network filesystems): two renames.
    aside = Path(tempfile.mkdtemp(prefix=f".{outdir.name}{STAGING_INFIX}", dir=outdir.parent))
    (aside / MARKER).write_bytes(MARKER_TEXT)
    os.rename(outdir, aside / "previous")
    try:
        os.rename(staging, outdir)
    except OSError:
        os.rename(aside / "previous", outdir)
        raise
    os.rename(aside, staging)  # removed by the caller like an exchanged old output


def write_new_file(path: Path, chunks: Iterable[bytes] | Callable[[int], None], *,
                   mode: int = 0o644) -> None:  # fmt: skip
    """Create `path`, which must not exist, from `chunks` (or `writer(fd)`), whole or not at all."""
    path = path.absolute()
    if path.exists() or path.is_symlink():
        raise OutputError(f"{path}: already exists; refusing to overwrite it")
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}{STAGING_INFIX}", dir=path.parent
        )
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
