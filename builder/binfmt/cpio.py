"""cpio newc archives, the initramfs format: a deterministic writer and the one reader.

The format is Documentation/driver-api/early-userspace/buffer-format.rst:
a 110-byte header of 8-digit hex fields, the NUL-terminated name, the data,
each padded to 4 bytes, and a `TRAILER!!!` entry. An initrd is several
archives one after another, each plain or compressed, with zero padding
between them; the kernel unpacks them in order, later ones over earlier ones.

The writer is pure: entries in, bytes out. Owner, times and inode numbers
are fixed, so the same entries always give the same bytes. The reader walks
an initrd once (`segments`), and `read_initrd` lists the members of what
that walk finds.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from builder.binfmt.reader import ByteReader
from builder.compression import Compression, decompress_at, detect
from builder.errors import InitrdError

NEWC_MAGIC = b"070701"
NEWC_CRC_MAGIC = b"070702"  # the same layout with a checksum field, which readers ignore
NEWC_MAGICS = (NEWC_MAGIC, NEWC_CRC_MAGIC)
NEWC_HEADER_SIZE = 110
NEWC_FIELDS = 13  # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
#                   rdevminor namesize check, 8 hex digits each, after the magic
TRAILER = "TRAILER!!!"
# Archives end on a 512-byte boundary, as GNU cpio writes them.
ARCHIVE_BLOCK = 512
# Field indexes of the header, after the 6-byte magic.
_MODE, _FILESIZE, _RDEVMAJOR, _RDEVMINOR, _NAMESIZE = 1, 6, 9, 10, 11


class NewcEntry(Protocol):
    """What the writer needs of one member; `st_mode` carries the file type bits."""

    @property
    def path(self) -> str: ...
    @property
    def st_mode(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def rdev(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class CpioEntry:
    """One member to write: `path` is absolute; a symlink's target is its `data`."""

    path: str
    st_mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _header(
    name: str, ino: int, mode: int, nlink: int, mtime: int, size: int, rdev: tuple[int, int]
) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = NEWC_MAGIC + b"".join(b"%08X" % value for value in fields) + encoded
    return header + b"\0" * (-len(header) % 4)


def write_cpio(entries: Iterable[NewcEntry], mtime: int = 0) -> bytes:
    """A cpio newc archive of `entries`, in the order given, with a trailer.

    Inode numbers count up from 1 in order, so they are stable; hard links
    are not used. Every member gets `mtime`.

    >>> archive = write_cpio([CpioEntry("/init", stat.S_IFREG | 0o755, b"#!/bin/sh\\n")])
    >>> archive[:6], len(archive)
    (b'070701', 512)
    >>> [(entry.path, oct(entry.mode), entry.data) for entry in read_initrd(archive)]
    [('/init', '0o100755', b'#!/bin/sh\\n')]
    """
    chunks: list[bytes] = []
    for ino, entry in enumerate(entries, start=1):
        nlink = 2 if stat.S_ISDIR(entry.st_mode) else 1
        name = entry.path.lstrip("/")
        chunks.append(_header(name, ino, entry.st_mode, nlink, mtime, len(entry.data), entry.rdev))
        chunks.append(entry.data + b"\0" * (-len(entry.data) % 4))
    chunks.append(_header(TRAILER, 0, 0, 1, 0, 0, (0, 0)))
    archive = b"".join(chunks)
    return archive + b"\0" * (-len(archive) % ARCHIVE_BLOCK)


@dataclass(frozen=True)
class ArchiveEntry:
    """One member as read back from an initrd; `segment` counts the archives from 0."""

    path: str
    mode: int
    size: int
    data: bytes
    rdev: tuple[int, int]
    segment: int

    @property
    def target(self) -> str:
        return self.data.decode("utf-8", "replace") if stat.S_ISLNK(self.mode) else ""


@dataclass(frozen=True)
class Segment:
    """One plain archive or compressed stream of an initrd, at [start, end) of the file.

    `contents` is the uncompressed bytes: the archive itself, or what the
    stream holds (one or more archives).
    """

    start: int
    end: int
    compression: Compression
    contents: bytes = field(repr=False)

    @property
    def compressed(self) -> bool:
        return self.compression is not Compression.NONE


class _Member(NamedTuple):
    """A member header, with where its data sits in the bytes it was read from."""

    name: str
    mode: int
    rdev: tuple[int, int]
    data_start: int
    data_end: int


def segments(data: bytes, name: str = "initrd") -> list[Segment]:
    """Each plain archive and compressed stream of an initrd, in order.

    `name` starts every error message (an `InitrdError` naming the byte).

    >>> from builder.compression import compress
    >>> empty = write_cpio([])
    >>> initrd = empty + compress(empty, Compression.GZIP, 9)
    >>> [(segment.start, segment.end, segment.compression) for segment in segments(initrd)]
    [(0, 124, <Compression.NONE: 'none'>), (512, 562, <Compression.GZIP: 'gzip'>)]
    """
    reader = ByteReader(data, name, InitrdError, noun="initrd")
    return [segment for segment, _ in _walk(reader, streams=True)]


def read_initrd(data: bytes, name: str = "initrd") -> list[ArchiveEntry]:
    """Every member of an initrd: concatenated archives, each plain or compressed.

    Zero padding between archives is skipped, as the kernel does. A member
    of a compressed stream that is wrong names the stream and the byte
    inside its uncompressed contents.

    >>> read_initrd(b"garbage", "initrd.img")
    Traceback (most recent call last):
    ...
    builder.errors.InitrdError: initrd.img: byte 0x0: expected a cpio newc archive or ...
    """
    entries: list[ArchiveEntry] = []
    reader = ByteReader(data, name, InitrdError, noun="initrd")
    for index, (segment, members) in enumerate(_walk(reader, streams=True)):
        source = data
        if segment.compressed:
            where = f"{name}: {segment.compression} stream at byte {segment.start:#x}"
            inner = ByteReader(segment.contents, where, InitrdError, noun="stream")
            members = [member for _, found in _walk(inner, streams=False) for member in found]
            source = segment.contents
        entries += (_entry(member, source, index) for member in members)
    return entries


def _entry(member: _Member, source: bytes, segment: int) -> ArchiveEntry:
    data = source[member.data_start : member.data_end]
    path = "/" + member.name.lstrip("/")
    return ArchiveEntry(path, member.mode, len(data), data, member.rdev, segment)


def _walk(reader: ByteReader, *, streams: bool) -> Iterator[tuple[Segment, list[_Member]]]:
    """The one walk over concatenated archives: each segment, with a plain one's members.

    Zero bytes between archives are padding. With `streams`, a compressed
    stream may stand where an archive does (the top level of an initrd);
    its members are left to the caller, which walks its contents again
    without streams, as the kernel does not unpack a stream inside a stream.
    """
    data = reader.data
    offset = 0
    while offset < len(data):
        if data[offset] == 0:
            offset += 1
            continue
        kind = None if data.startswith(NEWC_MAGICS, offset) else detect(data, offset)
        if kind is None:
            members, end = _archive(reader, offset, streams)
            yield Segment(offset, end, Compression.NONE, data[offset:end]), members
        elif streams:
            where = f"{reader.name}: byte {offset:#x}"
            contents, end = decompress_at(data, offset, kind, where=where, error=InitrdError)
            yield Segment(offset, end, kind, contents), []
        else:
            reader.fail(offset, f"expected a cpio newc archive, found {kind} data")
        offset = end


def _archive(reader: ByteReader, start: int, streams: bool) -> tuple[list[_Member], int]:
    """The members of the plain archive at `start`, and the offset after its trailer."""
    if not reader.has(start, NEWC_MAGIC) and not reader.has(start, NEWC_CRC_MAGIC):
        expected = "a cpio newc archive"
        if streams:
            expected += " or a compressed stream (zstd, gzip, xz, lz4, lzma, bzip2)"
        reader.fail(start, f"expected {expected}, found {reader.data[start : start + 6].hex()}")
    members: list[_Member] = []
    offset = start
    while True:
        member, offset = _member(reader, offset)
        if member.name == TRAILER:
            return members, offset
        members.append(member)


def _member(reader: ByteReader, offset: int) -> tuple[_Member, int]:
    """The member whose header is at `offset`, and where the next header starts."""
    header = reader.raw(offset, NEWC_HEADER_SIZE, "cpio newc header")
    if header[:6] not in NEWC_MAGICS:
        reader.fail(offset, f"expected cpio newc magic, found {header[:6]!r}")
    try:
        fields = [int(header[6 + 8 * index : 14 + 8 * index], 16) for index in range(NEWC_FIELDS)]
    except ValueError:
        reader.fail(offset, "cpio header is not hexadecimal")
    name_start = offset + NEWC_HEADER_SIZE
    name_size = fields[_NAMESIZE]
    name = reader.raw(name_start, name_size, "cpio member name")[:-1]
    data_start = name_start + name_size + (-(name_start + name_size) % 4)
    data_end = data_start + fields[_FILESIZE]
    text = name.decode("utf-8", "replace")
    if data_end > len(reader.data):
        reader.fail(offset, f"cpio member {text!r} runs past the end of the {reader.noun}")
    member = _Member(
        text, fields[_MODE], (fields[_RDEVMAJOR], fields[_RDEVMINOR]), data_start, data_end
    )
    return member, data_end + (-data_end % 4)
