"""arm64 and RISC-V `Image`: the 64-byte boot header, plain or in its EFI-stub PE form.

Documentation/arch/arm64/booting.rst ("Call the kernel image") and
Documentation/arch/riscv/boot-image-header.rst. The two share the header
layout up to the magic; each parser class here is its architecture's own.
"""

from __future__ import annotations

from typing import ClassVar

from builder.arch import ARCHES, Arch
from builder.binfmt.kernelimg.base import KernelFormat, find_banner, image_reader
from builder.binfmt.kernelimg.model import BootImageHeader, ImageFormat, KernelImage, Placement
from builder.binfmt.kernelimg.pe import DOS_MAGIC, machine_offset, pe_sections
from builder.binfmt.reader import ByteReader
from builder.compression import Compression
from builder.units import KiB

IMAGE_TEXT_OFFSET = 8
IMAGE_IMAGE_SIZE = 16
IMAGE_FLAGS = 24
IMAGE_HEADER_SIZE = 64
ARM64_MAGIC_OFFSET = 56
ARM64_MAGIC = b"ARM\x64"
ARM64_FLAG_BIG_ENDIAN = 1 << 0
ARM64_FLAG_PAGE_SIZE_SHIFT = 1
ARM64_FLAG_PAGE_SIZE_MASK = 0x3
ARM64_FLAG_PHYS_ANYWHERE = 1 << 3
ARM64_PAGE_SIZES = {1: 4 * KiB, 2: 16 * KiB, 3: 64 * KiB}
# Before v3.17 image_size is 0 and text_offset is 0x80000 (booting.rst).
ARM64_LEGACY_TEXT_OFFSET = 0x80000
RISCV_VERSION = 32
RISCV_MAGIC_OFFSET = 48
RISCV_MAGIC = b"RISCV\x00\x00\x00"  # deprecated since header 0.2, still written
RISCV_MAGIC2_OFFSET = 56
RISCV_MAGIC2 = b"RSC\x05"
RISCV_FLAG_BIG_ENDIAN = 1 << 0


class BootImageFormat(KernelFormat):
    """Shared parsing of the arm64 and RISC-V 64-byte Image header."""

    format = ImageFormat.IMAGE
    arch: ClassVar[Arch]

    @classmethod
    def header(cls, reader: ByteReader) -> BootImageHeader:
        raise NotImplementedError

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        reader = image_reader(data, name)
        reader.need(0, IMAGE_HEADER_SIZE, f"{cls.arch} Image header")
        header = cls.header(reader)
        if header.big_endian:
            reader.fail(IMAGE_FLAGS, "expected a little-endian kernel (flags bit 0 clear)")
        if header.efi_stub:
            cls._check_efi_stub(reader)
        version, banner = find_banner(data)
        return KernelImage(
            name=name,
            format=ImageFormat.IMAGE,
            arch=cls.arch,
            version=version,
            banner=banner,
            placement=Placement(
                relocatable=header.phys_placement_anywhere,
                alignment=ARCHES[cls.arch].image_alignment,
                min_address=0,
                max_address=None,
                fixed_address=None,
                memory_size=header.image_size or None,
                load_offset=header.text_offset,
                entry=0,
                entry_is_address=False,
            ),
            compression=Compression.NONE,
            file_size=len(data),
            decompressed_size=None,
            header=header,
            loadable=data,
        )

    @classmethod
    def _check_efi_stub(cls, reader: ByteReader) -> None:
        """The PE header is this architecture's, and its sections are all in the file."""
        machine, sections = pe_sections(reader)
        expected = ARCHES[cls.arch].pe_machine
        if machine != expected:
            reader.fail(
                machine_offset(reader),
                f"expected PE machine {expected or 0:#x} for {cls.arch}, found {machine:#x}",
            )
        # A plain Image cannot tell it was cut short; its PE sections can.
        for section in sections:
            reader.need(section.raw_offset, section.raw_size, f"PE section {section.name} contents")


class Arm64ImageFormat(BootImageFormat):
    """arm64 `Image` (booting.rst), also in the EFI-stub PE form Debian ships.

    >>> header = bytearray(64); header[56:60] = ARM64_MAGIC
    >>> header[16] = 0x10; header[24] = 0b1010  # image_size 16 bytes; 4K pages, anywhere
    >>> image = Arm64ImageFormat.parse(bytes(header), "Image")
    >>> placement = image.placement
    >>> image.arch, placement.memory_size, image.boot_header.page_size, placement.relocatable
    (<Arch.AARCH64: 'aarch64'>, 16, 4096, True)
    """

    arch = Arch.AARCH64

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return data[ARM64_MAGIC_OFFSET : ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC

    @classmethod
    def header(cls, reader: ByteReader) -> BootImageHeader:
        reader.expect(ARM64_MAGIC_OFFSET, ARM64_MAGIC, "arm64 Image magic")
        image_size = reader.u64(IMAGE_IMAGE_SIZE, "image_size")
        flags = reader.u64(IMAGE_FLAGS, "flags")
        text_offset = reader.u64(IMAGE_TEXT_OFFSET, "text_offset")
        if image_size == 0:
            # Pre-3.17: flags are absent and text_offset may be in kernel endianness.
            text_offset, flags = ARM64_LEGACY_TEXT_OFFSET, 0
        page_code = (flags >> ARM64_FLAG_PAGE_SIZE_SHIFT) & ARM64_FLAG_PAGE_SIZE_MASK
        return BootImageHeader(
            text_offset=text_offset,
            image_size=image_size,
            flags=flags,
            big_endian=bool(flags & ARM64_FLAG_BIG_ENDIAN),
            page_size=ARM64_PAGE_SIZES.get(page_code),
            phys_placement_anywhere=bool(flags & ARM64_FLAG_PHYS_ANYWHERE),
            header_version=None,
            efi_stub=reader.has(0, DOS_MAGIC),
        )


class RiscvImageFormat(BootImageFormat):
    """RISC-V 64-bit `Image` (boot-image-header.rst).

    >>> header = bytearray(64); header[56:60] = RISCV_MAGIC2; header[32] = 2  # version 0.2
    >>> image = RiscvImageFormat.parse(bytes(header), "Image")
    >>> image.arch, image.boot_header.header_version, image.placement.alignment // 2**20
    (<Arch.RISCV64: 'riscv64'>, '0.2', 2)
    """

    arch = Arch.RISCV64

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return (
            data[RISCV_MAGIC2_OFFSET : RISCV_MAGIC2_OFFSET + 4] == RISCV_MAGIC2
            or data[RISCV_MAGIC_OFFSET : RISCV_MAGIC_OFFSET + 8] == RISCV_MAGIC
        )

    @classmethod
    def header(cls, reader: ByteReader) -> BootImageHeader:
        # Header 0.1 had only the first magic; 0.2 added magic2 where arm64 has its own.
        if not (
            reader.has(RISCV_MAGIC2_OFFSET, RISCV_MAGIC2)
            or reader.has(RISCV_MAGIC_OFFSET, RISCV_MAGIC)
        ):
            reader.expect(RISCV_MAGIC2_OFFSET, RISCV_MAGIC2, "RISC-V Image magic2")
        flags = reader.u64(IMAGE_FLAGS, "flags")
        version = reader.u32(RISCV_VERSION, "header version")
        return BootImageHeader(
            text_offset=reader.u64(IMAGE_TEXT_OFFSET, "text_offset"),
            image_size=reader.u64(IMAGE_IMAGE_SIZE, "image_size"),
            flags=flags,
            big_endian=bool(flags & RISCV_FLAG_BIG_ENDIAN),
            page_size=None,
            # The kernel sets up its mapping from wherever it was put (PMD aligned).
            phys_placement_anywhere=True,
            header_version=f"{version >> 16}.{version & 0xFFFF}",
            efi_stub=reader.has(0, DOS_MAGIC),
        )
