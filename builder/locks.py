"""Advisory locks (flock) that make kdump-build's runs take turns.

Two runs that write the same output, or arm the same machine, would
otherwise undo each other: one cleaning up the other's live staging
directory, or `enable` removing a capture a kernel hook just built. The
kernel drops a flock when its holder exits, even when killed, so a lock
never outlives a run.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked_directory(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on directory `path` itself (no file is created in it).

    >>> import tempfile
    >>> with locked_directory(Path(tempfile.mkdtemp())):
    ...     pass
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@contextmanager
def locked_file(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, created (0600, never through a symlink) if missing.

    >>> import tempfile
    >>> lock = Path(tempfile.mkdtemp()) / "run" / "x.lock"
    >>> with locked_file(lock):
    ...     oct(lock.stat().st_mode & 0o777)
    '0o600'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(path, flags, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
