"""Files kdump-build installs outside its own directories: the unit, the hooks, the GRUB
drop-in. Each carries `MARKER` in a comment line; a file without it was written by
someone else and is never replaced or removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from builder.atomic import STAGING_INFIX, write_new_file
from builder.errors import OutputError

MARKER = "Written by kdump-build enable; kdump-build disable removes it."


def marker_line(comment: str = "#") -> str:
    return f"{comment} {MARKER}\n"


SEAL = "# kdump-build wrote this file with sha256 "


def sealed(text: str) -> str:
    """`text` with a last line recording its digest, so an edit by the admin shows.

    >>> print(sealed("a = 1\\n")[-65:], end="")
    cb78bd8a17f7b751fe0d4663366dcbc257204033ef7ddd64b1f2969573b5b2e2
    """
    return f"{text}{SEAL}{hashlib.sha256(text.encode()).hexdigest()}\n"


def is_unedited(path: Path) -> bool:
    """Whether `path` still holds exactly what `sealed` wrote (no edit since)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    body, found, digest = text.rpartition(SEAL)
    return bool(found) and digest == f"{hashlib.sha256(body.encode()).hexdigest()}\n"


def is_managed(path: Path) -> bool:
    """Whether `path` is a regular file that carries our marker.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "f"
    >>> _ = path.write_text(marker_line() + "x=1\\n")
    >>> is_managed(path), is_managed(path.with_name("missing"))
    (True, False)
    """
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return MARKER in head


def write_managed(path: Path, text: str, *, mode: int = 0o644) -> bool:
    """Install `text` (which must hold the marker) at `path`; True when it changed.

    A new file is created whole; one of ours is replaced by a rename; anything
    else at `path` is refused with an `OutputError`.
    """
    if MARKER not in text:
        raise ValueError(f"{path}: managed text without the marker")
    data = text.encode()
    if path.exists() or path.is_symlink():
        if not is_managed(path):
            raise OutputError(
                f"{path}: exists and was not written by kdump-build; refusing to replace it "
                "(move it away, or merge it by hand)"
            )
        if path.read_bytes() == data and (path.stat().st_mode & 0o7777) == mode:
            return False
        _replace(path, data, mode)
        return True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{path.parent}: cannot create it ({error.strerror})") from None
    write_new_file(path, [data], mode=mode)
    return True


def _replace(path: Path, data: bytes, mode: int) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}{STAGING_INFIX}", dir=path.parent)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
        os.fchmod(descriptor, mode)
        os.close(descriptor)
        descriptor = -1
        os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"{path}: {error.strerror}") from None
    finally:
        if descriptor >= 0:
            os.close(descriptor)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def remove_managed(path: Path) -> bool:
    """Remove `path` if it is ours; True when removed. Someone else's file stays."""
    if not is_managed(path):
        return False
    try:
        path.unlink()
    except OSError as error:
        raise OutputError(f"{path}: cannot remove it ({error.strerror})") from None
    return True
