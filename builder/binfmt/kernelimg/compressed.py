"""A compressed kernel (Image.gz, Image.zst, vmlinux.xz, ...): decompress, then parse it."""

from __future__ import annotations

import dataclasses

from builder.binfmt.kernelimg.base import KernelFormat, image_reader, parse_as
from builder.binfmt.kernelimg.image import Arm64ImageFormat, RiscvImageFormat
from builder.binfmt.kernelimg.model import ImageFormat, KernelImage
from builder.binfmt.kernelimg.vmlinux import ElfFormat
from builder.compression import decompress, detect
from builder.errors import ImageError


class CompressedFormat(KernelFormat):
    """A compressed kernel: the stream's magic says the format, the contents are parsed.

    >>> import gzip
    >>> header = bytearray(64); header[56:60] = b"ARM\\x64"
    >>> image = CompressedFormat.parse(gzip.compress(bytes(header)), "Image.gz")
    >>> image.arch, image.compression, image.decompressed_size
    (<Arch.AARCH64: 'aarch64'>, <Compression.GZIP: 'gzip'>, 64)
    """

    format = ImageFormat.IMAGE

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return detect(data) is not None

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        kind = detect(data)
        if kind is None:
            image_reader(data, name).fail(0, "expected gzip, zstd, xz, lzma, bzip2 or lz4 data")
        inner_data = decompress(data, kind, where=f"{name}: byte 0x0", error=ImageError)
        inner = parse_as(
            inner_data, f"{name} (decompressed)", (Arm64ImageFormat, RiscvImageFormat, ElfFormat)
        )
        # The loader needs the decompressed bytes; the name stays the user's file.
        return dataclasses.replace(
            inner,
            name=name,
            compression=kind,
            file_size=len(data),
            decompressed_size=len(inner_data),
        )
