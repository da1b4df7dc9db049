"""Compression formats: one enum, detection by magic or file suffix, bounded decoding,
the kernel-readable encodings we write, and what the kernel's decoder allocates.

Every caller that meets compressed bytes (kernel images and zboot payloads,
modules and firmware, initrd streams, the fit model's decoder workspace)
comes here. Decoding is bounded: a stream that expands beyond its limit is
an error, never an allocation of whatever it asks for.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from enum import StrEnum
from typing import Any

from builder.errors import FormatError, KdumpBuildError
from builder.units import KiB, MiB, describe_size, format_size


class Compression(StrEnum):
    """A compression format, as the kernel's build and its unpackers name them."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"
    LZMA = "lzma"
    BZIP2 = "bzip2"
    LZ4 = "lz4"  # the kernel's legacy lz4 framing (lib/decompress_unlz4.c)
    LZO = "lzo"


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
# The kernel reads lz4's legacy format: this magic, then chunks of (u32 LE
# compressed size, LZ4 block) of at most 8 MiB uncompressed each. It has no end
# marker, so the kernel reads chunks to the end of its input: an lz4 archive
# must come last in an initrd.
LZ4_LEGACY_MAGIC = (0x184C2102).to_bytes(4, "little")
LZ4_LEGACY_CHUNK = 8 * MiB

# Leading bytes of each format as the kernel's Makefiles and our encoders write it.
MAGICS: tuple[tuple[bytes, Compression], ...] = (
    (GZIP_MAGIC, Compression.GZIP),
    (ZSTD_MAGIC, Compression.ZSTD),
    (XZ_MAGIC, Compression.XZ),
    (b"\x5d\x00\x00", Compression.LZMA),  # lzma_alone, `lzma -9` properties
    (b"BZh", Compression.BZIP2),
    (LZ4_LEGACY_MAGIC, Compression.LZ4),
    (b"\x89LZO\x00\r\n\x1a\n", Compression.LZO),
)
# What the kernel's initramfs unpacker reads and we write, in the recipe's order.
INITRD_FORMATS = (
    Compression.ZSTD,
    Compression.GZIP,
    Compression.XZ,
    Compression.LZ4,
    Compression.NONE,
)
# Highest level of each encoder we drive (zstd: 22, the "ultra" levels).
MAX_LEVEL = {Compression.GZIP: 9, Compression.XZ: 9, Compression.LZ4: 12, Compression.ZSTD: 22}
# File suffixes of compressed modules and firmware.
SUFFIXES = {".gz": Compression.GZIP, ".xz": Compression.XZ, ".zst": Compression.ZSTD}

# A corrupt or hostile stream must not exhaust memory; real kernels are under 100 MiB.
DEFAULT_LIMIT = 512 * MiB
# zstd can turn a few input bytes into 128 KiB blocks: feeding small chunks
# bounds what one call may produce before the limit is checked again.
_ZSTD_INPUT_CHUNK = 4 * KiB

# What the kernel's streaming decoders (lib/decompress_*.c, called by
# populate_rootfs with a flush callback) allocate besides their window: zstd
# two 128 KiB I/O buffers, the DStream context and its block buffers;
# inflate its workspace and buffers; xz its LZMA2 state and I/O buffers.
ZSTD_DECODER_OVERHEAD = 640 * KiB
GZIP_DECODER_WORKSPACE = 128 * KiB
XZ_DECODER_OVERHEAD = 64 * KiB


def detect(data: bytes, offset: int = 0) -> Compression | None:
    """The format whose magic starts `data` at `offset`, or None.

    >>> detect(gzip.compress(b"x")), detect(b"plain")
    (<Compression.GZIP: 'gzip'>, None)
    """
    for magic, kind in MAGICS:
        if data.startswith(magic, offset):
            return kind
    return None


def by_suffix(path: str) -> Compression:
    """The format a module or firmware file name says (`.ko.xz`), NONE when plain.

    >>> by_suffix("/lib/modules/6.1/ext4.ko.xz"), by_suffix("ext4.ko")
    (<Compression.XZ: 'xz'>, <Compression.NONE: 'none'>)
    """
    for suffix, kind in SUFFIXES.items():
        if path.endswith(suffix):
            return kind
    return Compression.NONE


def decompress(
    data: bytes,
    kind: Compression,
    *,
    where: str,
    limit: int = DEFAULT_LIMIT,
    error: type[KdumpBuildError] = FormatError,
) -> bytes:
    """The contents of the complete `kind` stream at the start of `data`.

    `where` starts every error message (a file name and byte offset); bytes
    after the end of the stream are ignored.

    >>> decompress(gzip.compress(b"hello"), Compression.GZIP, where="x")
    b'hello'
    >>> decompress(gzip.compress(b"hello")[:-4], Compression.GZIP, where="f: byte 0x0")
    Traceback (most recent call last):
    ...
    builder.errors.FormatError: f: byte 0x0: gzip data is truncated (no end of stream)
    """
    return decompress_at(data, 0, kind, where=where, limit=limit, error=error)[0]


def decompress_at(
    data: bytes,
    offset: int,
    kind: Compression,
    *,
    where: str,
    limit: int = DEFAULT_LIMIT,
    error: type[KdumpBuildError] = FormatError,
) -> tuple[bytes, int]:
    """Decode the stream starting at `offset`; return its contents and where it ends.

    An lz4 (legacy) stream has no end marker and runs to the end of `data`.
    """
    if kind is Compression.NONE:
        return data[offset:], len(data)
    try:
        if kind is Compression.LZ4:
            out, end = _lz4_legacy_decode(data, offset, limit, where, error)
        elif kind is Compression.ZSTD:
            out, end = _zstd_decode(data, offset, limit)
        elif kind in (Compression.GZIP, Compression.XZ, Compression.LZMA, Compression.BZIP2):
            out, end = _stdlib_decode(data, offset, kind, limit)
        else:
            raise error(f"{where}: {kind} compression is not supported (no decoder here)")
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as problem:
        raise error(f"{where}: expected valid {kind} data ({_first_line(problem)})") from None
    if len(out) > limit:
        raise error(f"{where}: {kind} data expands beyond {limit // MiB} MiB")
    if end < 0:
        raise error(f"{where}: {kind} data is truncated (no end of stream)")
    return out, end


def _first_line(problem: BaseException) -> str:
    text = str(problem)
    return text.splitlines()[0] if text else type(problem).__name__


def _stdlib_decode(data: bytes, offset: int, kind: Compression, limit: int) -> tuple[bytes, int]:
    """zlib, lzma and bz2 decoders, capped at `limit` + 1 bytes; end -1 when truncated."""
    decoder: Any
    if kind is Compression.GZIP:
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif kind is Compression.BZIP2:
        decoder = bz2.BZ2Decompressor()
    else:
        decoder = lzma.LZMADecompressor(lzma.FORMAT_AUTO)
    out = decoder.decompress(data[offset:], limit + 1)
    if not decoder.eof:
        return out, -1
    return out, len(data) - len(decoder.unused_data)


def _zstd_decode(data: bytes, offset: int, limit: int) -> tuple[bytes, int]:
    # Imported here: at start-up, zstandard would cost ~3.4 ms.
    import zstandard

    decoder = zstandard.ZstdDecompressor().decompressobj()
    chunks: list[bytes] = []
    total = 0
    position = offset
    while position < len(data) and not decoder.eof and total <= limit:
        chunk = data[position : position + _ZSTD_INPUT_CHUNK]
        position += len(chunk)
        try:
            produced = decoder.decompress(chunk)
        except zstandard.ZstdError as problem:
            raise ValueError(str(problem)) from None
        chunks.append(produced)
        total += len(produced)
    out = b"".join(chunks)
    if not decoder.eof:
        return out, -1
    return out, position - len(decoder.unused_data)


def _lz4_legacy_decode(
    data: bytes, offset: int, limit: int, where: str, error: type[KdumpBuildError]
) -> tuple[bytes, int]:
    """Chunks from `offset` to the end of `data`, as the kernel reads them."""
    # Imported here: at start-up, lz4.block would cost ~1.2 ms.
    import lz4.block

    out: list[bytes] = []
    total = 0
    position = offset + len(LZ4_LEGACY_MAGIC)
    while position < len(data) and total <= limit:
        # Offsets in messages count from the stream's start, which `where` names.
        if len(data) - position < 4:
            raise error(f"{where}: lz4 chunk header at +{position - offset:#x} is truncated")
        size = int.from_bytes(data[position : position + 4], "little")
        position += 4
        if data[position - 4 : position] == LZ4_LEGACY_MAGIC:
            continue  # a concatenated lz4 stream starts again
        if size == 0 or position + size > len(data):
            raise error(
                f"{where}: lz4 chunk of {size} bytes at +{position - 4 - offset:#x} "
                "runs past the end"
            )
        try:
            block = lz4.block.decompress(
                data[position : position + size], uncompressed_size=LZ4_LEGACY_CHUNK
            )
        except lz4.block.LZ4BlockError as problem:
            raise ValueError(str(problem)) from None
        out.append(block)
        total += len(block)
        position += size
    return b"".join(out), len(data)


def compress(data: bytes, kind: Compression, level: int) -> bytes:
    """Encode `data` in a form the kernel's initramfs unpacker reads.

    zstd writes one frame with its content size; xz uses CRC32 checks, since
    the kernel's xz decoder knows no CRC64; gzip carries no timestamp; lz4 is
    the legacy framing.

    >>> decompress(compress(b"abc" * 100, Compression.XZ, 6), Compression.XZ, where="x")[:6]
    b'abcabc'
    """
    if kind is Compression.NONE:
        return data
    if kind is Compression.ZSTD:
        # Imported here: at start-up, zstandard would cost ~3.4 ms.
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(data), threads=-1, write_content_size=True
        )
        return zstandard.ZstdCompressor(compression_params=params).compress(data)
    if kind is Compression.GZIP:
        return gzip.compress(data, compresslevel=level, mtime=0)
    if kind is Compression.XZ:
        return lzma.compress(data, check=lzma.CHECK_CRC32, preset=level)
    if kind is Compression.LZ4:
        return _lz4_legacy_encode(data, level)
    raise FormatError(f"cannot write {kind} (the initrd takes {INITRD_FORMATS})")


def _lz4_legacy_encode(data: bytes, level: int) -> bytes:
    # Imported here: at start-up, lz4.block would cost ~1.2 ms.
    import lz4.block

    chunks = [LZ4_LEGACY_MAGIC]
    for start in range(0, len(data), LZ4_LEGACY_CHUNK):
        block = lz4.block.compress(
            data[start : start + LZ4_LEGACY_CHUNK],
            mode="high_compression",
            compression=min(level, MAX_LEVEL[Compression.LZ4]),
            store_size=False,
        )
        chunks += [len(block).to_bytes(4, "little"), block]
    return b"".join(chunks)


def encoder_version(kind: Compression) -> str:
    """The encoder library and its version: part of a cache key for encoded bytes.

    >>> encoder_version(Compression.NONE)
    'none'
    """
    if kind is Compression.ZSTD:
        # Imported here: at start-up, zstandard would cost ~3.4 ms.
        import zstandard

        return f"zstd-{zstandard.ZSTD_VERSION}"
    if kind is Compression.LZ4:
        # Imported here: at start-up, lz4 would cost ~0.9 ms.
        import lz4

        return f"lz4-{lz4.library_version_string()}"
    if kind is Compression.GZIP:
        return f"zlib-{zlib.ZLIB_RUNTIME_VERSION}"
    # xz (Python's lzma does not say its liblzma version) and the rest: the name
    # alone, as compressed-archive cache keys have always spelled it.
    return str(kind)


def decoder_workspace(stream: bytes) -> tuple[int, str]:
    """Bytes the kernel allocates to unpack one compressed initrd stream, and what they are.

    zstd: the frame's window size (lib/decompress_unzstd.c sizes its stream
    by it); xz: the LZMA2 dictionary size (xz_dec in XZ_DYNALLOC mode
    allocates all of it); lz4 (legacy): one 8 MiB output chunk; gzip: a
    32 KiB window and buffers.

    >>> size, what = decoder_workspace(compress(bytes(4 << 20), Compression.ZSTD, 19))
    >>> size == (4 << 20) + ZSTD_DECODER_OVERHEAD, what
    (True, 'zstd window 4M')
    """
    if stream.startswith(ZSTD_MAGIC):
        window = zstd_window_size(stream)
        return window + ZSTD_DECODER_OVERHEAD, f"zstd window {describe_size(window)}"
    if stream.startswith(XZ_MAGIC):
        dictionary = xz_dictionary_size(stream)
        return dictionary + XZ_DECODER_OVERHEAD, f"xz dictionary {describe_size(dictionary)}"
    if stream.startswith(LZ4_LEGACY_MAGIC):
        return LZ4_LEGACY_CHUNK, f"lz4 chunk {format_size(LZ4_LEGACY_CHUNK)}"
    return GZIP_DECODER_WORKSPACE, "gzip window 32K"


def zstd_window_size(data: bytes) -> int:
    """Window size from a zstd frame header (RFC 8878 section 3.1.1.1)."""
    if len(data) < 6:
        raise FormatError("byte 4: truncated zstd frame header")
    descriptor = data[4]
    single_segment = descriptor & 0x20
    if not single_segment:
        exponent, mantissa = data[5] >> 3, data[5] & 7
        base = 1 << (10 + exponent)
        return base + base // 8 * mantissa
    # Single segment: the window is the whole content, whose size follows.
    dictionary_bytes = (0, 1, 2, 4)[descriptor & 3]
    content_bytes = (1, 2, 4, 8)[descriptor >> 6]
    start = 5 + dictionary_bytes
    field = data[start : start + content_bytes]
    if len(field) != content_bytes:
        raise FormatError(f"byte {start}: truncated zstd frame header")
    size = int.from_bytes(field, "little")
    return size + 256 if content_bytes == 2 else size


def xz_dictionary_size(data: bytes) -> int:
    """LZMA2 dictionary size from the first block header of an xz stream."""
    position = 12  # after the stream header
    if len(data) < position + 2 or data[position] == 0:
        raise FormatError(f"byte {position}: xz stream has no block header")
    flags = data[position + 1]
    position += 2

    def varint() -> int:
        nonlocal position
        value, shift = 0, 0
        while position < len(data):
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise FormatError(f"byte {position}: truncated xz block header")

    for present in (flags & 0x40, flags & 0x80):  # compressed, uncompressed size
        if present:
            varint()
    for _ in range((flags & 3) + 1):
        filter_id, size = varint(), varint()
        properties = data[position : position + size]
        position += size
        if filter_id == 0x21 and len(properties) == 1:  # LZMA2
            bits = properties[0] & 0x3F
            return 0xFFFFFFFF if bits == 40 else (2 | (bits & 1)) << (bits // 2 + 11)
    raise FormatError("xz block has no LZMA2 filter")
