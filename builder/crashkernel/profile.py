"""The fit step of a build: what the capture consists of, judged against the reservation.

`capture_profile` reads the facts of a planned build (kernel footprint,
initrd sizes, CPUs the capture kernel brings up, dump target, collector);
`fit_recipe` turns them into a `FitReport` for the recipe's RAM sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.binfmt.cpio import segments
from builder.binfmt.kernelimg import KernelImage
from builder.compression import LZ4_LEGACY_CHUNK, LZ4_LEGACY_MAGIC, XZ_MAGIC, ZSTD_MAGIC
from builder.crashkernel.model import (
    DEFAULT_CALIBRATION,
    Calibration,
    CaptureProfile,
    FitReport,
    fit,
    format_size,
    parse_size,
)
from builder.errors import InitrdError, RecipeError
from builder.image.initrd import Member, MemberKind
from builder.recipe.model import Recipe

PAGE_SIZE = 4096


def unpacked_size(members: Sequence[Member]) -> int:
    """Bytes the unpacked initrd holds in the rootfs (tmpfs keeps whole pages per file).

    >>> from builder.image.initrd import InitrdPlan
    >>> plan = InitrdPlan()
    >>> plan.file("/a", b"x" * 5000)
    >>> plan.file("/b", b"y")
    >>> unpacked_size(list(plan.members()))
    12288
    """
    total = 0
    for member in members:
        # Symlink targets and directories live in inodes, not pages (short ones at least).
        if member.kind is MemberKind.FILE:
            total += -(-len(member.data) // PAGE_SIZE) * PAGE_SIZE
    return total


# What the kernel's streaming decompressors (lib/decompress_*.c, called by
# populate_rootfs with a flush callback) allocate besides their window: zstd
# two 128 KiB I/O buffers, the DStream context and its block buffers;
# inflate its workspace and buffers; xz its LZMA2 state and I/O buffers.
ZSTD_OVERHEAD = 640 * 1024
GZIP_WORKSPACE = 128 * 1024
XZ_OVERHEAD = 64 * 1024


def decompressor_workspace(initrd: bytes) -> tuple[int, str]:
    """Bytes the kernel allocates to unpack ``initrd``: the largest over its streams.

    The kernel unpacks the archives one after the other and frees each
    decompressor before the next. zstd: the frame's window size
    (lib/decompress_unzstd.c sizes its stream by it); xz: the LZMA2
    dictionary size (xz_dec in XZ_DYNALLOC mode allocates all of it); lz4
    (legacy format): one 8 MiB output chunk; gzip: a 32 KiB window and buffers.

    >>> from builder.compression import Compression, compress
    >>> size, what = decompressor_workspace(compress(bytes(4 << 20), Compression.ZSTD, 19))
    >>> size == (4 << 20) + ZSTD_OVERHEAD, what
    (True, 'zstd window 4M')
    >>> from builder.binfmt.cpio import write_cpio
    >>> decompressor_workspace(write_cpio([]))
    (0, 'uncompressed')
    """
    streams = [initrd[part.start : part.end] for part in segments(initrd) if part.compressed]
    found = [_stream_workspace(stream) for stream in streams]
    return max(found, default=(0, "uncompressed"))


def _stream_workspace(stream: bytes) -> tuple[int, str]:
    if stream.startswith(ZSTD_MAGIC):
        window = _zstd_window(stream)
        return window + ZSTD_OVERHEAD, f"zstd window {_size_text(window)}"
    if stream.startswith(XZ_MAGIC):
        dictionary = _xz_dictionary(stream)
        return dictionary + XZ_OVERHEAD, f"xz dictionary {_size_text(dictionary)}"
    if stream.startswith(LZ4_LEGACY_MAGIC):
        return LZ4_LEGACY_CHUNK, f"lz4 chunk {format_size(LZ4_LEGACY_CHUNK)}"
    return GZIP_WORKSPACE, "gzip window 32K"


def _size_text(size: int) -> str:
    exact = format_size(size)
    return exact if not exact.isdigit() else f"{size / (1 << 20):.2f} MiB"


def _zstd_window(data: bytes) -> int:
    """Window size from a zstd frame header (RFC 8878 section 3.1.1.1)."""
    if len(data) < 6:
        raise InitrdError("initrd: byte 4: truncated zstd frame header")
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
        raise InitrdError(f"initrd: byte {start}: truncated zstd frame header")
    size = int.from_bytes(field, "little")
    return size + 256 if content_bytes == 2 else size


def _xz_dictionary(data: bytes) -> int:
    """LZMA2 dictionary size from the first block header of an xz stream."""
    position = 12  # after the stream header
    if len(data) < position + 2 or data[position] == 0:
        raise InitrdError(f"initrd: byte {position}: xz stream has no block header")
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
        raise InitrdError(f"initrd: byte {position}: truncated xz block header")

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
    raise InitrdError("initrd: xz block has no LZMA2 filter")


def capture_cpus(cmdline: str) -> int:
    """CPUs the capture kernel brings up: the last ``nr_cpus=`` (or ``maxcpus=``), else 1.

    >>> capture_cpus("irqpoll nr_cpus=1 reset_devices"), capture_cpus("maxcpus=2 nr_cpus=4")
    (1, 4)
    """
    found: dict[str, int] = {}
    for word in cmdline.split():
        name, _, value = word.partition("=")
        if name in ("nr_cpus", "maxcpus") and value.isdigit():
            found[name] = int(value)  # the last one wins, as in the kernel
    # nr_cpus= caps the possible CPUs (per-CPU areas); maxcpus= only those booted.
    return max(1, found.get("nr_cpus", found.get("maxcpus", 1)))


def capture_profile(
    recipe: Recipe, kernel: KernelImage, cmdline: str, members: Sequence[Member], initrd: bytes
) -> CaptureProfile:
    """The capture a build produced, as the memory model sees it."""
    memory_size = kernel.kernel.memory_size
    if memory_size is None:
        # Without init_size/image_size the decompressed image is the best lower bound.
        memory_size = kernel.kernel.decompressed_size or kernel.kernel.file_size
    return CaptureProfile(
        kernel_memory_size=memory_size,
        initrd_compressed_size=len(initrd),
        initrd_unpacked_size=unpacked_size(members),
        initrd_decompressor_size=decompressor_workspace(initrd)[0],
        cpus=capture_cpus(cmdline),
        dump_target=recipe.dump.target,
        makedumpfile=recipe.dump.collector == "makedumpfile",
    )


def ram_sizes(values: Sequence[str], where: str) -> list[int]:
    """Parse RAM sizes (``4G``, ``1536M``); each must be positive.

    >>> ram_sizes(["1G", "64G"], "--ram")
    [1073741824, 68719476736]
    """
    sizes = []
    for index, value in enumerate(values):
        label = where if len(values) == 1 else f"{where} item {index}"
        size = parse_size(value, where=label)
        if size <= 0:
            raise RecipeError(f"{label}: RAM size must be positive, got {value!r}")
        sizes.append(size)
    return sizes


def fit_recipe(
    recipe: Recipe,
    profile: CaptureProfile,
    *,
    spec: str | None = None,
    rams: Sequence[int] | None = None,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> FitReport:
    """The recipe's fit: ``spec`` and ``rams`` override crashkernel.reserve and crashkernel.ram."""
    where = f"{recipe.path}: crashkernel.ram"
    sizes = list(rams) if rams else ram_sizes(recipe.crashkernel.ram, where)
    return fit(
        spec if spec is not None else recipe.crashkernel.reserve,
        sizes,
        profile,
        arch=recipe.target.arch,
        calibration=calibration,
    )
