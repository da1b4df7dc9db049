"""EFI zboot: a PE stub that carries a compressed arm64 or RISC-V Image.

The `zimg` header is drivers/firmware/efi/libstub/zboot-header.S; the
compression names are Makefile.zboot's comp-type.
"""

from __future__ import annotations

from builder.arch import by_pe_machine
from builder.binfmt.kernelimg.base import KernelFormat, image_reader, parse_as, wrap
from builder.binfmt.kernelimg.image import Arm64ImageFormat, RiscvImageFormat
from builder.binfmt.kernelimg.model import ImageFormat, KernelImage, ZbootHeader
from builder.binfmt.kernelimg.pe import DOS_MAGIC, pe_sections
from builder.binfmt.reader import ByteReader
from builder.compression import Compression, decompress
from builder.errors import ImageError

ZBOOT_MAGIC_OFFSET = 4
ZBOOT_MAGIC = b"zimg"
ZBOOT_PAYLOAD_OFFSET = 8
ZBOOT_PAYLOAD_SIZE = 12
ZBOOT_COMPRESSION = 24
ZBOOT_COMPRESSION_END = 0x38  # the string is padded up to LINUX_PE_MAGIC
# zstd22 and xzkern are the kernel's spellings of its zstd and xz settings.
ZBOOT_COMPRESSIONS = {
    "gzip": Compression.GZIP,
    "zstd22": Compression.ZSTD,
    "zstd": Compression.ZSTD,
    "xzkern": Compression.XZ,
    "xz": Compression.XZ,
    "lzma": Compression.LZMA,
    "bzip2": Compression.BZIP2,
    "lz4": Compression.LZ4,
    "lzo": Compression.LZO,
}


class ZbootFormat(KernelFormat):
    """EFI zboot: a PE stub carrying a compressed arm64 or RISC-V Image.

    >>> import gzip
    >>> inner = bytearray(64); inner[56:60] = b"RSC\\x05"  # a RISC-V Image header
    >>> payload = gzip.compress(bytes(inner))
    >>> head = bytearray(0x40); head[:8] = b"MZ\\0\\0zimg"; head[24:28] = b"gzip"
    >>> head[8:16] = (0x40).to_bytes(4, "little") + len(payload).to_bytes(4, "little")
    >>> image = ZbootFormat.parse(bytes(head) + payload, "vmlinuz.efi")
    >>> image.format, image.arch, image.compression, image.zboot.pe_machine
    (<ImageFormat.ZBOOT: 'zboot'>, <Arch.RISCV64: 'riscv64'>, <Compression.GZIP: 'gzip'>, None)
    """

    format = ImageFormat.ZBOOT

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return (
            data[:2] == DOS_MAGIC
            and data[ZBOOT_MAGIC_OFFSET : ZBOOT_MAGIC_OFFSET + 4] == ZBOOT_MAGIC
        )

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        reader = image_reader(data, name)
        reader.expect(0, DOS_MAGIC, "DOS header magic")
        reader.expect(ZBOOT_MAGIC_OFFSET, ZBOOT_MAGIC, "zboot image type")
        payload_offset = reader.u32(ZBOOT_PAYLOAD_OFFSET, "zboot payload offset")
        payload_size = reader.u32(ZBOOT_PAYLOAD_SIZE, "zboot payload size")
        compression_name, compression = _compression(reader)
        payload = reader.raw(payload_offset, payload_size, "zboot compressed payload")
        try:
            machine: int | None = pe_sections(reader)[0]
        except ImageError:
            machine = None  # the PE part only matters to firmware
        inner_data = decompress(
            payload, compression, where=f"{name}: byte {payload_offset:#x}", error=ImageError
        )
        inner = parse_as(
            inner_data, f"{name} (zboot payload)", (Arm64ImageFormat, RiscvImageFormat)
        )
        expected = by_pe_machine(machine) if machine is not None else None
        if expected is not None and expected.arch != inner.arch:
            reader.fail(
                0,
                f"expected a {expected.arch} Image inside this {expected.arch} PE, "
                f"found {inner.arch}",
            )
        header = ZbootHeader(compression, compression_name, payload_offset, payload_size, machine)
        return wrap(
            ImageFormat.ZBOOT,
            data,
            name,
            inner,
            header,
            compression=compression,
            decompressed_size=len(inner_data),
        )


def _compression(reader: ByteReader) -> tuple[str, Compression]:
    """The compression type as the header spells it, and what it means."""
    field = reader.raw(
        ZBOOT_COMPRESSION, ZBOOT_COMPRESSION_END - ZBOOT_COMPRESSION, "compression type"
    )
    spelled = field.split(b"\x00", 1)[0].decode("ascii", "replace")
    compression = ZBOOT_COMPRESSIONS.get(spelled)
    if compression is None:
        known = ", ".join(sorted(ZBOOT_COMPRESSIONS))
        reader.fail(ZBOOT_COMPRESSION, f"expected a compression type ({known}), found {spelled!r}")
    return spelled, compression
