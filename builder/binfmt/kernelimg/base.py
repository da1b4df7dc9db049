"""What every kernel-image parser shares: the format interface, dispatch, banner search.

One class per format: `matches` looks only at magic numbers and never
raises; `parse` validates everything and raises `ImageError` naming the
byte offset. Containers (zboot, UKI, a compressed file) parse the kernel
inside with `parse_as`, limited to the formats that may sit there.
"""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar

from builder.binfmt.kernelimg.model import FormatHeader, ImageFormat, KernelImage
from builder.binfmt.reader import ByteReader
from builder.errors import ImageError

_BANNER = re.compile(rb"Linux version (\d[^\s\x00]{0,200})[^\n\x00]{0,800}")


class KernelFormat:
    """One image format: recognise it by its magic, then parse it."""

    format: ClassVar[ImageFormat]

    @classmethod
    def matches(cls, data: bytes) -> bool:
        raise NotImplementedError

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        raise NotImplementedError


def image_reader(data: bytes, name: str) -> ByteReader:
    """A reader whose failures are `ImageError`s saying where the image ends.

    >>> image_reader(b"MZ", "vmlinuz").u32(0, "magic")
    Traceback (most recent call last):
    ...
    builder.errors.ImageError: vmlinuz: truncated at byte 0x0: ..., but the image ends at byte 0x2
    """
    return ByteReader(data, name, ImageError, noun="image")


def parse_as(data: bytes, name: str, allowed: tuple[type[KernelFormat], ...]) -> KernelImage:
    """Parse `data` as the first of `allowed` whose magic it carries."""
    for candidate in allowed:
        if candidate.matches(data):
            return candidate.parse(data, name)
    kinds = ", ".join(sorted({str(candidate.format) for candidate in allowed}))
    head = data[:8].hex(" ") or "nothing"
    raise ImageError(f"{name}: byte 0x0: expected a kernel image ({kinds}), found {head}")


def wrap(
    outer_format: ImageFormat,
    data: bytes,
    name: str,
    inner: KernelImage,
    header: FormatHeader,
    **extra: object,
) -> KernelImage:
    """A container image with its own `header`, placed as its embedded kernel (whose own
    header stays on `inner`)."""
    return dataclasses.replace(
        inner,
        name=name,
        format=outer_format,
        file_size=len(data),
        header=header,
        inner=inner,
        **extra,  # type: ignore[arg-type]
    )


def find_banner(data: bytes) -> tuple[str | None, str | None]:
    """(version, banner) from the `Linux version ...` string in an uncompressed kernel.

    Kernels since 6.1 carry a weak placeholder banner (`# SMP`, no build
    number) next to the real one (init/version-timestamp.c), so prefer a
    banner with `#<digits>`.

    >>> find_banner(b"\\0Linux version 6.1.0-9 (x) # SMP\\0Linux version 6.1.0-9 (x) #1 SMP\\n")
    ('6.1.0-9', 'Linux version 6.1.0-9 (x) #1 SMP')
    """
    first: re.Match[bytes] | None = None
    for count, match in enumerate(_BANNER.finditer(data)):
        if re.search(rb" #\d", match.group(0)):
            first = match
            break
        if first is None:
            first = match
        if count >= 8:
            break
    if first is None:
        return None, None
    return (
        first.group(1).decode("ascii", "replace"),
        first.group(0).decode("utf-8", "replace").rstrip(),
    )


def printable(raw: bytes) -> str:
    """Text from an image, safe in a one-line message: non-printables escaped.

    >>> printable(b".text\\n")
    '.text\\\\x0a'
    """
    text = raw.decode("latin-1")
    return "".join(c if c.isprintable() and c.isascii() else f"\\x{ord(c):02x}" for c in text)


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0
