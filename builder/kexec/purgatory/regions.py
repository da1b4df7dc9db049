"""The SHA-256 the purgatory checks: over every other segment, as in memory.

A segment is `(start, data, memsz)`. The purgatory hashes `memsz` bytes at
`start`, in table order; the kernel zero-fills a segment beyond its data, so
the digest here counts `memsz - len(data)` zero bytes after the data. The
region table is what purgatory.c reads: up to 16 `{u64 start, u64 len}`
little-endian, a zero `len` ending it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from builder.errors import LayoutError

__all__ = ["MAX_REGIONS", "REGION_TABLE_SIZE", "Segment", "regions_digest", "regions_table"]

MAX_REGIONS = 16  # KEXEC_SEGMENT_MAX, and the size of purgatory_sha256_regions
_REGION = struct.Struct("<QQ")
REGION_TABLE_SIZE = MAX_REGIONS * _REGION.size

Segment = tuple[int, bytes, int]
"""(start address, bytes loaded there, memsz); memsz >= len(bytes)."""

_ZERO_CHUNK = bytes(1 << 20)


def regions_digest(segments: Sequence[Segment]) -> bytes:
    """SHA-256 over the segments as the purgatory will see them in memory.

    >>> regions_digest([(0x100000, b"abc", 4)]) == hashlib.sha256(b"abc\\0").digest()
    True
    """
    _check(segments)
    digest = hashlib.sha256()
    for _start, data, memsz in segments:
        digest.update(data)
        zeros = memsz - len(data)
        while zeros:
            chunk = min(zeros, len(_ZERO_CHUNK))
            digest.update(_ZERO_CHUNK[:chunk])
            zeros -= chunk
    return digest.digest()


def regions_table(segments: Sequence[Segment]) -> bytes:
    """The `purgatory_sha256_regions` bytes for these segments.

    >>> regions_table([(0x100000, b"abc", 0x1000)])[:16].hex()
    '00001000000000000010000000000000'
    """
    _check(segments)
    table = b"".join(_REGION.pack(start, memsz) for start, _data, memsz in segments)
    return table + bytes(REGION_TABLE_SIZE - len(table))


def _check(segments: Sequence[Segment]) -> None:
    if len(segments) > MAX_REGIONS:
        raise LayoutError(
            f"purgatory: {len(segments)} segments to verify, the table holds {MAX_REGIONS}"
        )
    for index, (start, data, memsz) in enumerate(segments):
        where = f"purgatory: segment {index} at {start:#x}"
        if memsz <= 0:
            # A zero length would end the table early and skip later segments.
            raise LayoutError(f"{where}: memsz must be positive, got {memsz}")
        if len(data) > memsz:
            raise LayoutError(f"{where}: {len(data)} bytes do not fit memsz {memsz:#x}")
        if start < 0 or start + memsz > 1 << 64:
            raise LayoutError(f"{where}: outside the 64-bit address space")
