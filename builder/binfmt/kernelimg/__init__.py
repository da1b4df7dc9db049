"""Kernel image formats -> `KernelImage`: what a kernel is and how it must be placed.

Reads, from bytes only, the images users hand the builder: x86 bzImage
(bzimage), vmlinux ELF (vmlinux), arm64 and RISC-V `Image` (image; plain,
compressed, or in the EFI-stub PE form), EFI zboot images (zboot) and
unified kernel images (uki). The references are the kernel's own documents:
Documentation/arch/x86/boot.rst, Documentation/arch/arm64/booting.rst,
Documentation/arch/riscv/boot-image-header.rst and
drivers/firmware/efi/libstub/zboot-header.S.

Anything not understood, truncated or corrupt raises `ImageError` naming the
byte offset and what was expected there.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

from builder.binfmt.kernelimg.base import KernelFormat, parse_as
from builder.binfmt.kernelimg.bzimage import BzImageFormat
from builder.binfmt.kernelimg.compressed import CompressedFormat
from builder.binfmt.kernelimg.image import Arm64ImageFormat, RiscvImageFormat
from builder.binfmt.kernelimg.model import (
    BootImageHeader,
    BzImageHeader,
    ElfHeader,
    FormatHeader,
    ImageFormat,
    KernelImage,
    LoadSegment,
    PeSection,
    Placement,
    UkiInfo,
    ZbootHeader,
)
from builder.binfmt.kernelimg.uki import UkiFormat
from builder.binfmt.kernelimg.vmlinux import ElfFormat
from builder.binfmt.kernelimg.zboot import ZbootFormat

__all__ = [
    "FORMATS",
    "BootImageHeader",
    "BzImageHeader",
    "ElfHeader",
    "FormatHeader",
    "ImageFormat",
    "KernelFormat",
    "KernelImage",
    "LoadSegment",
    "PeSection",
    "Placement",
    "UkiInfo",
    "ZbootHeader",
    "describe",
    "parse_kernel_image",
]

# Detection order matters: a UKI and an x86 EFI-stub bzImage are both PE files,
# and a zboot image is a PE too; only the checks below tell them apart.
FORMATS: tuple[type[KernelFormat], ...] = (
    UkiFormat,
    ZbootFormat,
    BzImageFormat,
    Arm64ImageFormat,
    RiscvImageFormat,
    ElfFormat,
    CompressedFormat,
)


def parse_kernel_image(data: bytes, name: str = "<image>") -> KernelImage:
    """Identify and parse a kernel image of any supported format.

    `name` is used in error messages (usually the file's path). Here a
    gzip-compressed arm64 Image header, the smallest kernel there is:

    >>> import gzip
    >>> image = parse_kernel_image(gzip.compress(bytes(56) + b"ARM\\x64" + bytes(4)), "Image.gz")
    >>> image.format, image.arch, image.compression
    (<ImageFormat.IMAGE: 'Image'>, <Arch.AARCH64: 'aarch64'>, <Compression.GZIP: 'gzip'>)
    >>> parse_kernel_image(b"hello", "f")
    Traceback (most recent call last):
    ...
    builder.errors.ImageError: f: byte 0x0: expected a kernel image (...), found 68 65 6c 6c 6f
    """
    return parse_as(data, name, FORMATS)


def _jsonable(value: object) -> object:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


# The key each format's header has in `describe`.
_HEADER_KEYS: dict[type[FormatHeader], str] = {
    BzImageHeader: "bzimage",
    BootImageHeader: "image_header",
    ElfHeader: "elf",
    ZbootHeader: "zboot",
    UkiInfo: "uki",
}


def describe(image: KernelImage) -> dict[str, object]:
    """A JSON-ready summary of an image (the `inspect --json` output).

    Integers stay integers; a format's own header appears under its key
    (`bzimage`, `image_header`, `elf`, `zboot`, `uki`), an embedded kernel
    under `inner`.

    >>> summary = describe(parse_kernel_image(bytes(56) + b"RSC\\x05" + bytes(4), "Image"))
    >>> summary["arch"], summary["relocatable"], summary["image_header"]["header_version"]
    ('riscv64', True, '0.0')
    """
    summary: dict[str, object] = {
        "name": image.name,
        "arch": str(image.arch),
        "format": str(image.format),
        "version": image.version,
        "banner": image.banner,
        **dataclasses.asdict(image.placement),
        "compression": str(image.compression),
        "file_size": image.file_size,
        "decompressed_size": image.decompressed_size,
    }
    header = image.header
    fields = _jsonable(dataclasses.asdict(header))
    if isinstance(header, BzImageHeader) and isinstance(fields, dict):
        fields["protocol_version"] = header.protocol_version
    summary[_HEADER_KEYS[type(header)]] = fields
    if image.inner is not None:
        summary["inner"] = describe(image.inner)
    return summary
