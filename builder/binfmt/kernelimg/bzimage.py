"""x86 bzImage: the real-mode setup header of boot protocol 2.06 and later.

Offsets and their meaning are those of Documentation/arch/x86/boot.rst,
"The Real-Mode Kernel Header" and "Details of Header Fields". This is the x86
boot protocol's own file, so it names the two x86 architectures it tells apart.
"""

from __future__ import annotations

from builder.arch import Arch
from builder.binfmt.kernelimg.base import KernelFormat, image_reader, is_power_of_two
from builder.binfmt.kernelimg.model import BzImageHeader, ImageFormat, KernelImage, Placement
from builder.binfmt.reader import ByteReader
from builder.compression import Compression
from builder.units import GiB

X86_SETUP_SECTS = 0x1F1
X86_SYSSIZE = 0x1F4
X86_BOOT_FLAG = 0x1FE
X86_HEADER = 0x202
X86_VERSION = 0x206
X86_KERNEL_VERSION = 0x20E
X86_LOADFLAGS = 0x211
X86_CODE32_START = 0x214
X86_KERNEL_ALIGNMENT = 0x230
X86_RELOCATABLE_KERNEL = 0x234
X86_MIN_ALIGNMENT = 0x235
X86_XLOADFLAGS = 0x236
X86_CMDLINE_SIZE = 0x238
X86_PAYLOAD_OFFSET = 0x248
X86_PAYLOAD_LENGTH = 0x24C
X86_PREF_ADDRESS = 0x258
X86_INIT_SIZE = 0x260
X86_HANDOVER_OFFSET = 0x264
X86_KERNEL_INFO_OFFSET = 0x268

X86_BOOT_FLAG_VALUE = 0xAA55
X86_HEADER_MAGIC = b"HdrS"
X86_SECTOR_SIZE = 512
X86_SETUP_SECTS_DEFAULT = 4  # setup_sects 0 means 4 (boot.rst)
X86_SYSSIZE_UNIT = 16  # syssize counts 16-byte paragraphs
X86_KERNEL_VERSION_BASE = 0x200  # kernel_version is a pointer relative to 0x200
X86_ENTRY_64 = 0x200  # 64-bit entry: protected-mode code start + 0x200
X86_DEFAULT_LOAD_ADDRESS = 0x100000  # where protected-mode code goes without pref_address
X86_BELOW_4G = 4 * GiB

# Boot protocol versions that introduced the fields we read.
X86_PROTOCOL_MIN = 0x0206  # cmdline_size; older kernels are out of scope
X86_PROTOCOL_PAYLOAD = 0x0208
X86_PROTOCOL_PREF_ADDRESS = 0x020A  # pref_address, init_size, min_alignment
X86_PROTOCOL_HANDOVER = 0x020B
X86_PROTOCOL_XLOADFLAGS = 0x020C
X86_PROTOCOL_KERNEL_INFO = 0x020F


class BzImageFormat(KernelFormat):
    """x86 bzImage, boot protocol 2.06 and later (boot.rst).

    The smallest bzImage: four setup sectors after the boot sector, holding
    the boot flag, the `HdrS` signature and protocol 2.15, and no kernel.

    >>> setup = bytearray(5 * 512)
    >>> setup[0x1FE:0x208] = b"\\x55\\xaaXXHdrS\\x0f\\x02"
    >>> setup[X86_XLOADFLAGS] = 1  # XLF_KERNEL_64
    >>> image = BzImageFormat.parse(bytes(setup), "bzImage")
    >>> placement = image.placement
    >>> image.arch, image.bzimage.protocol_version, placement.entry, placement.relocatable
    (<Arch.X86_64: 'x86_64'>, '2.15', 512, False)
    """

    format = ImageFormat.BZIMAGE

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return data[X86_HEADER : X86_HEADER + 4] == X86_HEADER_MAGIC

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        reader = image_reader(data, name)
        header = _setup_header(reader, _protocol(reader))
        return _placement(data, name, header)


def _protocol(reader: ByteReader) -> int:
    """The boot protocol version, after checking the header's signatures."""
    reader.expect(X86_HEADER, X86_HEADER_MAGIC, "x86 setup header signature")
    boot_flag = reader.u16(X86_BOOT_FLAG, "boot_flag")
    if boot_flag != X86_BOOT_FLAG_VALUE:
        reader.fail(X86_BOOT_FLAG, f"expected boot_flag 0xaa55, found {boot_flag:#06x}")
    protocol = reader.u16(X86_VERSION, "boot protocol version")
    if protocol < X86_PROTOCOL_MIN:
        reader.fail(
            X86_VERSION,
            f"expected boot protocol 2.06 or later, found {protocol >> 8}.{protocol & 0xFF:02d}",
        )
    return protocol


def _setup_header(reader: ByteReader, protocol: int) -> BzImageHeader:
    """Every setup header field the protocol has, checked against the file."""

    def since(version: int, offset: int, size: int, what: str) -> int | None:
        return reader.uint(offset, size, what) if protocol >= version else None

    setup_sects = reader.u8(X86_SETUP_SECTS, "setup_sects")
    kernel_offset = ((setup_sects or X86_SETUP_SECTS_DEFAULT) + 1) * X86_SECTOR_SIZE
    syssize_bytes = reader.u32(X86_SYSSIZE, "syssize") * X86_SYSSIZE_UNIT
    reader.need(kernel_offset, syssize_bytes, "protected-mode kernel (setup_sects and syssize)")
    kernel_size = len(reader.data) - kernel_offset
    kernel_version = _kernel_version(reader)
    relocatable = reader.u8(X86_RELOCATABLE_KERNEL, "relocatable_kernel") != 0
    kernel_alignment = _kernel_alignment(reader, relocatable)
    min_alignment = _min_alignment(reader, protocol)
    payload_offset, payload_length = _payload(reader, protocol, kernel_size)
    return BzImageHeader(
        protocol=protocol,
        setup_sects=setup_sects,
        kernel_version=kernel_version,
        loadflags=reader.u8(X86_LOADFLAGS, "loadflags"),
        code32_start=reader.u32(X86_CODE32_START, "code32_start"),
        relocatable_kernel=relocatable,
        kernel_alignment=kernel_alignment,
        min_alignment=min_alignment,
        pref_address=since(X86_PROTOCOL_PREF_ADDRESS, X86_PREF_ADDRESS, 8, "pref_address"),
        init_size=since(X86_PROTOCOL_PREF_ADDRESS, X86_INIT_SIZE, 4, "init_size"),
        xloadflags=since(X86_PROTOCOL_XLOADFLAGS, X86_XLOADFLAGS, 2, "xloadflags") or 0,
        cmdline_size=reader.u32(X86_CMDLINE_SIZE, "cmdline_size"),
        payload_offset=payload_offset,
        payload_length=payload_length,
        handover_offset=since(X86_PROTOCOL_HANDOVER, X86_HANDOVER_OFFSET, 4, "handover_offset"),
        kernel_info_offset=since(
            X86_PROTOCOL_KERNEL_INFO, X86_KERNEL_INFO_OFFSET, 4, "kernel_info_offset"
        ),
        kernel_offset=kernel_offset,
        kernel_size=kernel_size,
    )


def _kernel_version(reader: ByteReader) -> str | None:
    pointer = reader.u16(X86_KERNEL_VERSION, "kernel_version pointer")
    if not pointer:
        return None
    return reader.cstring(pointer + X86_KERNEL_VERSION_BASE, "kernel_version string")


def _kernel_alignment(reader: ByteReader, relocatable: bool) -> int:
    alignment = reader.u32(X86_KERNEL_ALIGNMENT, "kernel_alignment")
    if relocatable and not is_power_of_two(alignment):
        reader.fail(
            X86_KERNEL_ALIGNMENT,
            f"expected a power-of-two kernel_alignment, found {alignment:#x}",
        )
    return alignment


def _min_alignment(reader: ByteReader, protocol: int) -> int | None:
    """min_alignment in bytes (the header stores its log2), None before protocol 2.10."""
    if protocol < X86_PROTOCOL_PREF_ADDRESS:
        return None
    log2 = reader.u8(X86_MIN_ALIGNMENT, "min_alignment")
    if log2 > 63:
        reader.fail(X86_MIN_ALIGNMENT, f"expected min_alignment <= 63, found {log2}")
    return 1 << log2


def _payload(reader: ByteReader, protocol: int, kernel_size: int) -> tuple[int | None, int | None]:
    """(payload_offset, payload_length) of the compressed kernel, inside the protected-mode part."""
    if protocol < X86_PROTOCOL_PAYLOAD:
        return None, None
    offset = reader.u32(X86_PAYLOAD_OFFSET, "payload_offset")
    length = reader.u32(X86_PAYLOAD_LENGTH, "payload_length")
    if offset + length > kernel_size:
        reader.fail(
            X86_PAYLOAD_OFFSET,
            f"expected payload {offset:#x}+{length:#x} inside the "
            f"{kernel_size:#x}-byte protected-mode kernel",
        )
    return offset, length


def _placement(data: bytes, name: str, header: BzImageHeader) -> KernelImage:
    """Where a bzImage with this header may be loaded and how it is entered."""
    # The decompressor runs the kernel at LOAD_PHYSICAL_ADDR (= pref_address)
    # whenever it is loaded lower, even if relocatable (head_64.S), so the
    # image only stays inside a crash region placed at or above pref_address.
    run_address = header.pref_address or X86_DEFAULT_LOAD_ADDRESS
    relocatable = header.relocatable_kernel
    banner = header.kernel_version
    return KernelImage(
        name=name,
        format=ImageFormat.BZIMAGE,
        arch=Arch.X86_64 if header.kernel_64 else Arch.I386,
        version=banner.split()[0] if banner and banner.split() else None,
        banner=banner,
        placement=Placement(
            relocatable=relocatable,
            alignment=header.kernel_alignment if is_power_of_two(header.kernel_alignment) else 1,
            min_address=max(X86_DEFAULT_LOAD_ADDRESS, run_address),
            max_address=None if header.loadable_above_4g else X86_BELOW_4G,
            fixed_address=None if relocatable else run_address,
            memory_size=header.init_size,
            load_offset=0,
            entry=X86_ENTRY_64 if header.kernel_64 else 0,
            entry_is_address=False,
        ),
        compression=Compression.NONE,
        file_size=len(data),
        decompressed_size=None,
        header=header,
        loadable=data,
    )
