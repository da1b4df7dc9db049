"""The on-disk cache: where it is, and its one write primitive.

Every cache entry is written to a temporary name and renamed into place, so a
reader sees a whole entry or none; a failed write is ignored because the
cache only saves time.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KDUMP_BUILD_CACHE"


def default_cache_dir() -> Path:
    """Where fetched packages live: `$KDUMP_BUILD_CACHE`, else `~/.cache/kdump-build`."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "kdump-build"


def store_cache_entry(path: Path, data: bytes) -> None:
    """Write `data` at `path` whole or not at all; failures are ignored.

    >>> store_cache_entry(Path("/tmp/kdump-build-doc/entry"), b"x")
    >>> Path("/tmp/kdump-build-doc/entry").read_bytes()
    b'x'
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError:
        pass  # only an optimisation
