"""Advisory locks (flock) that make kdump-build's runs take turns.

Two runs that write the same output, or arm the same machine, would
otherwise undo each other: one cleaning up the other's live staging
directory, or `enable` removing a capture a kernel hook just built. The
kernel drops a flock when its holder exits, even when killed, so a lock
never outlives a run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Root's locks live where only root can create or open anything; a lock others could
# open (the output directory itself, a file in a shared directory) they could also hold
# forever, and a boot-time rebuild would wait for them.
ROOT_LOCKS = Path("/run/kdump-build/locks")


def _lock_directory() -> Path:
    """Where this user's locks live, created private; an OSError when someone else could
    open or replace them."""
    if os.geteuid() == 0:
        base = ROOT_LOCKS
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = Path(runtime) if runtime else Path.home() / ".cache"
        base = base / "kdump-build-locks"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(base)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077 or not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.EPERM, "not this user's private directory", str(base))
    return base


@contextmanager
def locked_directory(path: Path) -> Iterator[None]:
    """Hold this user's exclusive lock for directory `path` (for whatever is written in
    it); the lock file is named after the directory's device and inode, in a private
    directory of this user's, so no one else can hold it.

    >>> import tempfile
    >>> with locked_directory(Path(tempfile.mkdtemp())):
    ...     pass
    """
    info = os.stat(path)
    with locked_file(_lock_directory() / f"{info.st_dev}-{info.st_ino}.lock"):
        yield


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
