"""Unified kernel image (UKI): a PE with `.linux` and, beside it, `.initrd`, `.cmdline`, `.uname`.

The section names are those of the UAPI group's UKI specification, as
systemd's ukify and objcopy-based recipes write them.
"""

from __future__ import annotations

from builder.binfmt.kernelimg.base import KernelFormat, image_reader, parse_as, wrap
from builder.binfmt.kernelimg.bzimage import BzImageFormat
from builder.binfmt.kernelimg.compressed import CompressedFormat
from builder.binfmt.kernelimg.image import Arm64ImageFormat, RiscvImageFormat
from builder.binfmt.kernelimg.model import ImageFormat, KernelImage, UkiInfo
from builder.binfmt.kernelimg.pe import (
    DOS_MAGIC,
    DOS_PE_POINTER,
    pe_sections,
    section_bytes,
    section_text,
)
from builder.binfmt.kernelimg.zboot import ZbootFormat
from builder.errors import ImageError

UKI_KERNEL_SECTION = ".linux"
UKI_INITRD_SECTION = ".initrd"
UKI_CMDLINE_SECTION = ".cmdline"
UKI_UNAME_SECTION = ".uname"
# What may sit in `.linux`.
UKI_KERNELS = (BzImageFormat, ZbootFormat, Arm64ImageFormat, RiscvImageFormat, CompressedFormat)


class UkiFormat(KernelFormat):
    """Unified kernel image: a PE with `.linux` (and `.initrd`, `.cmdline`, `.uname`).

    A PE header with one section, `.linux`, holding a RISC-V Image header:

    >>> import struct
    >>> coff = b"PE\\0\\0" + struct.pack("<HHIIIHH", 0x5064, 1, 0, 0, 0, 0, 0)
    >>> table = b".linux\\0\\0" + struct.pack("<IIII", 64, 0x1000, 64, 0x80) + bytes(16)
    >>> kernel = bytes(56) + b"RSC\\x05" + bytes(4)
    >>> data = b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + coff + table + kernel
    >>> image = UkiFormat.parse(data, "uki.efi")
    >>> image.format, image.kernel.format, image.uki.kernel_offset
    (<ImageFormat.UKI: 'uki'>, <ImageFormat.IMAGE: 'Image'>, 128)
    """

    format = ImageFormat.UKI

    @classmethod
    def matches(cls, data: bytes) -> bool:
        if data[:2] != DOS_MAGIC:
            return False
        try:
            _, sections = pe_sections(image_reader(data, ""))
        except ImageError:
            return False
        return any(section.name == UKI_KERNEL_SECTION for section in sections)

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        reader = image_reader(data, name)
        machine, sections = pe_sections(reader)
        by_name = {section.name: section for section in sections}
        linux = by_name.get(UKI_KERNEL_SECTION)
        if linux is None:
            found = ", ".join(section.name for section in sections[:8]) or "none"
            reader.fail(
                DOS_PE_POINTER, f"expected a PE section {UKI_KERNEL_SECTION} (found {found})"
            )
        kernel = section_bytes(reader, linux)
        where = f"{name} ({UKI_KERNEL_SECTION} at {linux.raw_offset:#x})"
        inner = parse_as(kernel, where, UKI_KERNELS)
        initrd = by_name.get(UKI_INITRD_SECTION)
        info = UkiInfo(
            pe_machine=machine,
            sections=sections,
            kernel_offset=linux.raw_offset,
            kernel_size=len(kernel),
            cmdline=section_text(reader, by_name.get(UKI_CMDLINE_SECTION)),
            uname=section_text(reader, by_name.get(UKI_UNAME_SECTION)),
            initrd_size=len(section_bytes(reader, initrd)) if initrd is not None else None,
        )
        return wrap(ImageFormat.UKI, data, name, inner, info, version=inner.version or info.uname)
