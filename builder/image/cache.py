"""The on-disk cache: where it is, and its one entry format.

An entry is stored as `ENTRY_MAGIC`, the sha256 of its payload, then the
payload, in a file named after the caller's path plus `ENTRY_SUFFIX`. A
reader checks the digest and removes an entry that does not match (a flipped
bit, a file cut short by a crash, bytes from elsewhere), so what it returns
is exactly what was stored, and the caller recomputes and stores it again.

Writers write a temporary file of their own (several builds share one cache,
and one build writes from several threads) and rename it into place, so a
reader sees a whole entry or none. A failed write (a full disk, a file size
limit, a read-only cache) removes its temporary file and is otherwise
ignored: the cache only saves time. No fsync: an entry lost or cut short by
a crash fails its digest and is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

CACHE_ENV = "KDUMP_BUILD_CACHE"
ENTRY_MAGIC = b"kdump-build cache entry 1\n"
# Beside the name the caller gives: entries of the format before the digest
# (plain payloads) are never read as this one, nor this one by older code.
ENTRY_SUFFIX = ".e1"
_DIGEST_SIZE = 32
_HEADER_SIZE = len(ENTRY_MAGIC) + _DIGEST_SIZE
TEMPORARY_INFIX = ".tmp-"


def default_cache_dir() -> Path:
    """Where fetched packages live: `$KDUMP_BUILD_CACHE`, else `~/.cache/kdump-build`."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "kdump-build"


def entry_file(path: Path) -> Path:
    """The file an entry stored under `path` lives in."""
    return path.with_name(path.name + ENTRY_SUFFIX)


def encode_entry(data: bytes) -> bytes:
    """The bytes of an entry file holding `data`."""
    return ENTRY_MAGIC + hashlib.sha256(data).digest() + data


def decode_entry(raw: bytes) -> bytes | None:
    """The payload of entry bytes, or None when they are not a whole, intact entry.

    >>> decode_entry(encode_entry(b"abc"))
    b'abc'
    >>> damaged = bytearray(encode_entry(b"abc")); damaged[-1] ^= 1
    >>> decode_entry(bytes(damaged)) is None, decode_entry(b"abc") is None
    (True, True)
    """
    if len(raw) < _HEADER_SIZE or not raw.startswith(ENTRY_MAGIC):
        return None
    payload = raw[_HEADER_SIZE:]
    if hashlib.sha256(payload).digest() != raw[len(ENTRY_MAGIC) : _HEADER_SIZE]:
        return None
    return payload


def store_cache_entry(path: Path, data: bytes) -> None:
    """Store `data` as the entry `path`, whole or not at all; failures are ignored.

    >>> store_cache_entry(Path("/tmp/kdump-build-doc/entry"), b"x")
    >>> load_cache_entry(Path("/tmp/kdump-build-doc/entry"))
    b'x'
    """
    target = entry_file(path)
    temporary = ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{target.name}{TEMPORARY_INFIX}", dir=target.parent
        )
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(encode_entry(data))
        os.replace(temporary, target)
    except OSError:
        if temporary:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def load_cache_entry(path: Path) -> bytes | None:
    """The payload stored as the entry `path`, or None: missing, unreadable or damaged.

    A damaged entry is removed, so the caller's fresh value replaces it.
    """
    target = entry_file(path)
    try:
        raw = target.read_bytes()
    except OSError:
        return None
    payload = decode_entry(raw)
    if payload is None:
        with contextlib.suppress(OSError):
            target.unlink()
    return payload


def load_json_entry(path: Path) -> object | None:
    """A JSON document stored as the entry `path` (see `load_cache_entry`), or None."""
    payload = load_cache_entry(path)
    if payload is None:
        return None
    try:
        document: object = json.loads(payload)
    except ValueError:
        return None
    return document
