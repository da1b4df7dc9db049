"""makedumpfile's flattened format: read a stream back into a dump file.

`makedumpfile -F` writes its dump as a stream so it can go through a pipe
(ssh) or onto a raw block device: a 4096-byte header starting with the
signature "makedumpfile", type 1 and version 1, then blocks that each say
where their bytes belong in the dump file (a 16-byte header: offset and
size, both signed 64-bit big-endian), and an end marker whose offset and
size are both -1. The end marker is what tells a complete stream from a
partial one, and where the stream stops on a raw device that holds stale
bytes behind it. `makedumpfile -R` does the same rebuild.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.atomic import write_new_file
from builder.errors import DumpError

SIGNATURE = b"makedumpfile"
HEADER_SIZE = 4096
TYPE_FLAT_HEADER = 1
VERSION_FLAT_HEADER = 1
END_FLAG = -1
DATA_HEADER = struct.Struct(">qq")
# makedumpfile writes blocks of at most a few pages; anything far larger is corruption.
MAX_BLOCK = 1 << 30


@dataclass(frozen=True)
class Restored:
    """What a restore wrote: the dump's size and how many blocks the stream held."""

    size: int
    blocks: int
    stream_length: int


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def flat_header() -> bytes:
    """The 4096-byte header that starts every flattened stream."""
    header = SIGNATURE.ljust(16, b"\0") + struct.pack(">qq", TYPE_FLAT_HEADER, VERSION_FLAT_HEADER)
    return header.ljust(HEADER_SIZE, b"\0")


def flat_block(offset: int, data: bytes) -> bytes:
    """One data block: its header and bytes."""
    return DATA_HEADER.pack(offset, len(data)) + data


def flat_end() -> bytes:
    """The end marker."""
    return DATA_HEADER.pack(END_FLAG, END_FLAG)


def restore_stream(stream: BinaryIO, output: BinaryIO) -> Restored:
    """Rebuild the dump file from a flattened stream; `output` must be seekable.

    >>> import io
    >>> out = io.BytesIO()
    >>> data = flat_header() + flat_block(4, b"core") + flat_block(0, b"ELF!") + flat_end()
    >>> restore_stream(io.BytesIO(data), out).size, out.getvalue()
    (8, b'ELF!core')
    """
    header = _read_exact(stream, HEADER_SIZE)
    if len(header) < HEADER_SIZE or header[:16] != SIGNATURE.ljust(16, b"\0"):
        raise DumpError("byte offset 0: not a makedumpfile flattened stream (no signature)")
    kind, version = struct.unpack_from(">qq", header, 16)
    if (kind, version) != (TYPE_FLAT_HEADER, VERSION_FLAT_HEADER):
        raise DumpError(f"byte offset 16: unknown flattened type {kind} or version {version}")
    position = HEADER_SIZE
    size = 0
    blocks = 0
    while True:
        raw = _read_exact(stream, DATA_HEADER.size)
        if len(raw) < DATA_HEADER.size:
            raise DumpError(
                f"byte offset {position}: the stream ends without its end marker "
                "(an incomplete dump)"
            )
        offset, length = DATA_HEADER.unpack(raw)
        if offset == END_FLAG and length == END_FLAG:
            return Restored(size, blocks, position + DATA_HEADER.size)
        if offset < 0 or not 0 <= length <= MAX_BLOCK:
            raise DumpError(
                f"byte offset {position}: corrupt block header (offset {offset}, size {length})"
            )
        data = _read_exact(stream, length)
        if len(data) < length:
            raise DumpError(
                f"byte offset {position}: block of {length} bytes cut short (an incomplete dump)"
            )
        output.seek(offset)
        output.write(data)
        size = max(size, offset + length)
        blocks += 1
        position += DATA_HEADER.size + length


def restore_file(source: Path, destination: Path) -> Restored:
    """Restore `source` (a file or a raw block device) into `destination`, which must not exist.

    The dump appears whole or not at all (builder.atomic.write_new_file).
    """
    try:
        handle = open(source, "rb")  # noqa: SIM115 - closed below, also on errors
    except OSError as error:
        raise DumpError(f"{source}: {error.strerror}") from None
    restored: list[Restored] = []

    def rebuild(descriptor: int) -> None:
        with os.fdopen(descriptor, "wb", closefd=False) as output:
            try:
                result = restore_stream(handle, output)
            except DumpError as error:
                raise DumpError(f"{source}: {error}") from None
            output.truncate(result.size)
        restored.append(result)

    with handle:
        write_new_file(destination, rebuild, mode=0o600)  # a vmcore is memory: root's alone
    return restored[0]
