"""Initrd members, the deterministic cpio newc writer, compression and reading.

The writer is pure: members in, bytes out. Members are sorted by path so
parents come before children; owner, times and inode numbers are fixed, so
the same members always give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import posixpath
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import zstandard

from builder.errors import InitrdError, SourceError
from builder.image.cache import store_cache_entry
from builder.image.sources import NodeKind, Root, normalize

NEWC_MAGIC = b"070701"
NEWC_CRC_MAGIC = b"070702"
NEWC_HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
# Compressed stream magics the kernel's initramfs unpacker recognises.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
# The kernel reads lz4's legacy format (lib/decompress_unlz4.c): this magic, then
# chunks of (u32 LE compressed size, LZ4 block) of at most 8 MiB uncompressed each.
# It has no end marker, so the kernel reads chunks to the end of its input: an lz4
# archive must come last in the initrd.
LZ4_LEGACY_MAGIC = (0x184C2102).to_bytes(4, "little")
LZ4_LEGACY_CHUNK = 8 << 20
COMPRESSION_MAGICS = (ZSTD_MAGIC, GZIP_MAGIC, XZ_MAGIC, LZ4_LEGACY_MAGIC)


class MemberKind(Enum):
    """The kinds of file an initrd holds."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHARDEV = "chardev"


_KIND_BITS = {
    MemberKind.FILE: stat.S_IFREG,
    MemberKind.DIR: stat.S_IFDIR,
    MemberKind.SYMLINK: stat.S_IFLNK,
    MemberKind.CHARDEV: stat.S_IFCHR,
}


@dataclass(frozen=True)
class Member:
    """One file of the initrd. `path` is absolute; symlinks keep their target in `data`."""

    path: str
    kind: MemberKind
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    origin: str = ""

    @property
    def target(self) -> str:
        return self.data.decode() if self.kind is MemberKind.SYMLINK else ""


class InitrdPlan:
    """The members of an initrd, collected from roots and the recipe.

    Adding the same path twice is fine when it is the same member; a
    different member at a taken path is an error, so nothing is silently lost.
    """

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}
        self.missing_firmware: list[str] = []

    def add(self, member: Member) -> None:
        path = normalize(member.path)
        member = Member(path, member.kind, member.mode, member.data, member.rdev, member.origin)
        existing = self._members.get(path)
        if existing is not None:
            if (existing.kind, existing.mode, existing.data) != (
                member.kind,
                member.mode,
                member.data,
            ):
                raise InitrdError(
                    f"{path}: added twice with different contents "
                    f"(from {existing.origin or 'recipe'} and {member.origin or 'recipe'})"
                )
            return
        self._add_parents(path)
        self._members[path] = member

    def _add_parents(self, path: str) -> None:
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in self._members:
            self._members[parent] = Member(parent, MemberKind.DIR, 0o755)
            parent = posixpath.dirname(parent)
        if parent != "/" and self._members[parent].kind is not MemberKind.DIR:
            raise InitrdError(f"{path}: parent {parent} is not a directory in the initrd")

    def directory(self, path: str, mode: int = 0o755) -> None:
        self.add(Member(path, MemberKind.DIR, mode))

    def file(self, path: str, data: bytes, mode: int = 0o644, origin: str = "") -> None:
        self.add(Member(path, MemberKind.FILE, mode, data, origin=origin))

    def symlink(self, path: str, target: str, origin: str = "") -> None:
        self.add(Member(path, MemberKind.SYMLINK, 0o777, target.encode(), origin=origin))

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.add(Member(path, MemberKind.CHARDEV, mode, rdev=(major, minor)))

    def copy_from(self, root: Root, path: str) -> None:
        """Copy a file from a root, with every symlink met on the way to it.

        The symlinks stay symlinks (a soname link, a merged-/usr `/lib`), so
        the initrd resolves `path` the way the source root does.
        """
        resolution = root.resolve(path)
        for link in resolution.links:
            self.symlink(link.path, link.target, origin=link.origin)
        node = root.lookup(resolution.path)
        if node.kind is not NodeKind.FILE:
            raise SourceError(f"{root.description}: {path}: not a regular file")
        self.file(
            resolution.path, root.read_bytes(resolution.path), node.mode & 0o7777, node.origin
        )

    def has(self, path: str) -> bool:
        return normalize(path) in self._members

    def members(self) -> list[Member]:
        """Members sorted so that every parent precedes its children."""
        return sorted(self._members.values(), key=lambda member: member.path.split("/"))


def split_archives(
    members: Sequence[Member], archive_of: Callable[[Member], int]
) -> list[list[Member]]:
    """Split sorted members into separate archives, each with the directories above its members.

    The kernel unpacks concatenated archives one after another, so each
    archive must create the parents of its own members; a directory in
    several archives is created by the first and met again by the others,
    which is harmless. A directory with nothing below it goes to archive 0.
    Empty archives are left out.

    >>> plan = InitrdPlan(); plan.file("/a/b", b""); plan.file("/c", b"")
    >>> parts = split_archives(plan.members(), lambda member: int(member.path == "/c"))
    >>> [[member.path for member in part] for part in parts]
    [['/a', '/a/b'], ['/c']]
    """
    by_path = {member.path: member for member in members}
    wanted: dict[int, set[str]] = {}
    for member in members:
        if member.kind is MemberKind.DIR:
            continue
        index = archive_of(member)
        paths = wanted.setdefault(index, set())
        paths.add(member.path)
        parent = posixpath.dirname(member.path)
        while parent != "/" and parent not in paths:
            paths.add(parent)
            parent = posixpath.dirname(parent)
    placed = set().union(*wanted.values()) if wanted else set()
    wanted.setdefault(0, set()).update(
        path
        for path, member in by_path.items()
        if member.kind is MemberKind.DIR and path not in placed
    )
    return [
        [member for member in members if member.path in wanted[index]]
        for index in sorted(wanted)
        if wanted[index]
    ]


def _newc_header(
    name: str, ino: int, mode: int, nlink: int, mtime: int, size: int, rdev: tuple[int, int]
) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = NEWC_MAGIC + b"".join(b"%08X" % value for value in fields) + encoded
    return header + b"\0" * (-len(header) % 4)


def source_date_epoch() -> int:
    """Member mtimes: `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    return int(value) if value.isdigit() else 0


def write_cpio(members: Iterable[Member], mtime: int = 0) -> bytes:
    """A cpio newc archive of `members`, in the order given, with a trailer.

    Inode numbers count up from 1 in order, so they are stable; hard links
    are not used.

    >>> write_cpio([Member("/init", MemberKind.FILE, 0o755, b"#!/bin/sh\\n")])[:6]
    b'070701'
    """
    chunks: list[bytes] = []
    for ino, member in enumerate(members, start=1):
        name = member.path.lstrip("/")
        mode = _KIND_BITS[member.kind] | (member.mode & 0o7777)
        nlink = 2 if member.kind is MemberKind.DIR else 1
        chunks.append(_newc_header(name, ino, mode, nlink, mtime, len(member.data), member.rdev))
        chunks.append(member.data + b"\0" * (-len(member.data) % 4))
    chunks.append(_newc_header(TRAILER, 0, 0, 1, 0, 0, (0, 0)))
    archive = b"".join(chunks)
    return archive + b"\0" * (-len(archive) % 512)


def _compressor_version(method: str) -> str:
    if method == "zstd":
        return f"zstd-{zstandard.ZSTD_VERSION}"
    if method == "lz4":
        import lz4

        return f"lz4-{lz4.library_version_string()}"
    if method == "gzip":
        return f"zlib-{zlib.ZLIB_RUNTIME_VERSION}"
    return method


def compress_cached(data: bytes, method: str, level: int, cache: Path | None) -> bytes:
    """`compress`, remembered under the archive's sha256, method, level and library version.

    The result is the same bytes `compress` gives; a rebuild of unchanged
    contents skips the slow high-level compression.
    """
    if cache is None or method == "none":
        return compress(data, method, level)
    key = sha256(f"{sha256(data)}:{method}:{level}:{_compressor_version(method)}".encode())
    stored = cache / key[:2] / key
    try:
        return stored.read_bytes()
    except OSError:
        pass
    result = compress(data, method, level)
    store_cache_entry(stored, result)
    return result


def compress(data: bytes, method: str, level: int) -> bytes:
    """Compress an archive in a form the kernel's initramfs unpacker reads.

    zstd writes one frame with its content size; xz uses CRC32 checks, since
    the kernel's xz decoder knows no CRC64.
    """
    if method == "none":
        return data
    if method == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(data), threads=-1, write_content_size=True
        )
        return zstandard.ZstdCompressor(compression_params=params).compress(data)
    if method == "gzip":
        return gzip.compress(data, compresslevel=level, mtime=0)
    if method == "xz":
        return lzma.compress(data, check=lzma.CHECK_CRC32, preset=level)
    if method == "lz4":
        return _lz4_legacy(data, level)
    raise InitrdError(f"unknown compression {method!r}")


def _lz4_legacy(data: bytes, level: int) -> bytes:
    import lz4.block

    chunks = [LZ4_LEGACY_MAGIC]
    for start in range(0, len(data), LZ4_LEGACY_CHUNK):
        block = lz4.block.compress(
            data[start : start + LZ4_LEGACY_CHUNK],
            mode="high_compression",
            compression=min(level, 12),
            store_size=False,
        )
        chunks += [len(block).to_bytes(4, "little"), block]
    return b"".join(chunks)


def _lz4_legacy_decompress(data: bytes, offset: int) -> tuple[bytes, int]:
    """Chunks from `offset` to the end of `data`, as the kernel reads them."""
    import lz4.block

    out: list[bytes] = []
    position = offset + len(LZ4_LEGACY_MAGIC)
    while position < len(data):
        if len(data) - position < 4:
            raise InitrdError(f"byte {position}: truncated lz4 chunk header")
        size = int.from_bytes(data[position : position + 4], "little")
        position += 4
        if data[position - 4 : position] == LZ4_LEGACY_MAGIC:
            continue  # a concatenated lz4 stream starts again
        if size == 0 or position + size > len(data):
            raise InitrdError(f"byte {position - 4}: lz4 chunk of {size} bytes runs past the end")
        try:
            out.append(
                lz4.block.decompress(
                    data[position : position + size], uncompressed_size=LZ4_LEGACY_CHUNK
                )
            )
        except lz4.block.LZ4BlockError as error:
            raise InitrdError(f"byte {position - 4}: corrupt lz4 data ({error})") from None
        position += size
    return b"".join(out), position


def early_cpio(files: dict[str, bytes], mtime: int = 0) -> bytes:
    """An uncompressed cpio of `files` and their parent directories, for the start of an initrd.

    >>> early_cpio({"/kernel/x86/microcode/GenuineIntel.bin": b"..."})[:6]
    b'070701'
    """
    plan = InitrdPlan()
    for path, data in sorted(files.items()):
        plan.file(path, data, 0o644, origin="microcode")
    return write_cpio(plan.members(), mtime)


@dataclass(frozen=True)
class ArchiveEntry:
    """One member as read back from an initrd."""

    path: str
    mode: int
    size: int
    data: bytes
    rdev: tuple[int, int]
    segment: int

    @property
    def target(self) -> str:
        return self.data.decode("utf-8", "replace") if stat.S_ISLNK(self.mode) else ""


def _decompress_segment(data: bytes, offset: int) -> tuple[bytes, int]:
    """Decompress the stream at `offset`; return it and the offset after it."""
    rest = data[offset:]
    decompressor: Any
    if rest.startswith(LZ4_LEGACY_MAGIC):
        return _lz4_legacy_decompress(data, offset)
    if rest.startswith(ZSTD_MAGIC):
        decompressor = zstandard.ZstdDecompressor().decompressobj()
    elif rest.startswith(GZIP_MAGIC):
        decompressor = zlib.decompressobj(wbits=31)
    elif rest.startswith(XZ_MAGIC):
        decompressor = lzma.LZMADecompressor()
    else:
        raise InitrdError(
            f"byte {offset}: expected a cpio header or zstd, gzip, xz or lz4 data, "
            f"found {rest[:6].hex()}"
        )
    try:
        out = decompressor.decompress(rest)
    except (zstandard.ZstdError, zlib.error, lzma.LZMAError, EOFError) as error:
        raise InitrdError(f"byte {offset}: corrupt compressed data ({error})") from None
    if not decompressor.eof:
        raise InitrdError(f"byte {offset}: corrupt compressed data (the stream is truncated)")
    return out, len(data) - len(decompressor.unused_data)


def _parse_newc(data: bytes, origin: int, segment: int) -> Iterator[ArchiveEntry]:
    offset = 0
    while True:
        if offset + NEWC_HEADER_SIZE > len(data):
            raise InitrdError(f"byte {origin + offset}: truncated cpio header")
        header = data[offset : offset + NEWC_HEADER_SIZE]
        if header[:6] not in (NEWC_MAGIC, NEWC_CRC_MAGIC):
            raise InitrdError(
                f"byte {origin + offset}: expected cpio newc magic, found {header[:6]!r}"
            )
        try:
            fields = [int(header[6 + 8 * index : 14 + 8 * index], 16) for index in range(13)]
        except ValueError:
            raise InitrdError(f"byte {origin + offset}: cpio header is not hexadecimal") from None
        mode, size, rdev, name_size = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_end = offset + NEWC_HEADER_SIZE + name_size
        name = data[offset + NEWC_HEADER_SIZE : name_end - 1].decode("utf-8", "replace")
        data_start = name_end + (-name_end % 4)
        data_end = data_start + size
        if data_end > len(data):
            raise InitrdError(f"byte {origin + offset}: member {name!r} runs past the end")
        offset = data_end + (-data_end % 4)
        if name == TRAILER:
            return
        yield ArchiveEntry(
            "/" + name.lstrip("/"), mode, size, data[data_start:data_end], rdev, segment
        )


def read_initrd(data: bytes) -> list[ArchiveEntry]:
    """Every member of an initrd: concatenated archives, each plain or compressed.

    Zero padding between archives is skipped, as the kernel does.
    """
    entries: list[ArchiveEntry] = []
    offset = 0
    segment = 0
    while offset < len(data):
        if data[offset] == 0:
            offset += 1
            continue
        if data.startswith((NEWC_MAGIC, NEWC_CRC_MAGIC), offset):
            archive_start = offset
            length = _newc_length(data, offset)
            entries += _parse_newc(
                data[archive_start : archive_start + length], archive_start, segment
            )
            offset = archive_start + length
        else:
            inner, offset_after = _decompress_segment(data, offset)
            entries += _parse_archives(inner, offset, segment)
            offset = offset_after
        segment += 1
    return entries


def segments(data: bytes) -> list[tuple[int, int, bool]]:
    """(start, end, compressed) of each plain archive or compressed stream of an initrd.

    >>> segments(write_cpio([]) + compress(write_cpio([]), "gzip", 9))
    [(0, 124, False), (512, 562, True)]
    """
    found: list[tuple[int, int, bool]] = []
    offset = 0
    while offset < len(data):
        if data[offset] == 0:
            offset += 1
            continue
        if data.startswith((NEWC_MAGIC, NEWC_CRC_MAGIC), offset):
            end = offset + _newc_length(data, offset)
            found.append((offset, end, False))
        else:
            end = _decompress_segment(data, offset)[1]
            found.append((offset, end, True))
        offset = end
    return found


def _parse_archives(data: bytes, origin: int, segment: int) -> list[ArchiveEntry]:
    """Members of the cpio archives (with zero padding between) inside one compressed stream."""
    entries: list[ArchiveEntry] = []
    offset = 0
    while offset < len(data):
        if data[offset] == 0:
            offset += 1
            continue
        length = _newc_length(data, offset)
        entries += _parse_newc(data[offset : offset + length], origin, segment)
        offset += length
    return entries


def _newc_length(data: bytes, start: int) -> int:
    """Length of the uncompressed cpio archive at `start`, up to and including its trailer."""
    offset = start
    while True:
        header = data[offset : offset + NEWC_HEADER_SIZE]
        if len(header) < NEWC_HEADER_SIZE or header[:6] not in (NEWC_MAGIC, NEWC_CRC_MAGIC):
            raise InitrdError(f"byte {offset}: expected cpio newc header")
        try:
            size, name_size = int(header[54:62], 16), int(header[94:102], 16)
        except ValueError:
            raise InitrdError(f"byte {offset}: cpio header is not hexadecimal") from None
        name_end = offset + NEWC_HEADER_SIZE + name_size
        name = data[offset + NEWC_HEADER_SIZE : name_end - 1]
        data_end = name_end + (-name_end % 4) + size
        offset = data_end + (-data_end % 4)
        if offset > len(data):
            raise InitrdError(f"byte {start}: cpio archive runs past the end of the file")
        if name == TRAILER.encode():
            return offset - start


@dataclass(frozen=True)
class MemberChange:
    """How one path differs between two initrds: `added`, `removed` or `changed`."""

    path: str
    status: str
    before: ArchiveEntry | None
    after: ArchiveEntry | None

    def details(self) -> list[str]:
        """What changed, e.g. `size 10 -> 12`, `mode 0644 -> 0755`, `contents`."""
        if self.before is None or self.after is None:
            return []
        before, after = self.before, self.after
        found: list[str] = []
        if before.mode != after.mode:
            found.append(f"mode {before.mode:06o} -> {after.mode:06o}")
        if before.target != after.target:
            found.append(f"target {before.target} -> {after.target}")
        elif before.size != after.size:
            found.append(f"size {before.size} -> {after.size}")
        elif before.data != after.data:
            found.append("contents")
        if before.rdev != after.rdev:
            found.append(f"device {before.rdev} -> {after.rdev}")
        return found


def diff_initrds(before: list[ArchiveEntry], after: list[ArchiveEntry]) -> list[MemberChange]:
    """Members added, removed and changed between two initrds, by path.

    A path in several archives of one initrd counts as its last one, as the
    kernel unpacks later archives over earlier ones.

    >>> entry = ArchiveEntry("/init", 0o100755, 2, b"hi", (0, 0), 0)
    >>> [c.status for c in diff_initrds([entry], [])]
    ['removed']
    """
    old = {entry.path: entry for entry in before}
    new = {entry.path: entry for entry in after}
    changes: list[MemberChange] = []
    for path in sorted(old.keys() | new.keys(), key=lambda path: path.split("/")):
        if path not in new:
            changes.append(MemberChange(path, "removed", old[path], None))
        elif path not in old:
            changes.append(MemberChange(path, "added", None, new[path]))
        else:
            a, b = old[path], new[path]
            if (a.mode, a.data, a.rdev) != (b.mode, b.data, b.rdev):
                changes.append(MemberChange(path, "changed", a, b))
    return changes


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
