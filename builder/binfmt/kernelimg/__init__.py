"""Kernel image formats -> `KernelImage`: what a kernel is and how it must be placed.

Reads, from bytes only, the images users hand the builder: x86 bzImage, vmlinux
ELF, arm64 and RISC-V `Image` (plain, compressed, or in the EFI-stub PE form),
EFI zboot images and unified kernel images (UKI). The references are the
kernel's own documents: Documentation/arch/x86/boot.rst,
Documentation/arch/arm64/booting.rst, Documentation/arch/riscv/boot-image-header.rst
and drivers/firmware/efi/libstub/zboot-header.S.

Anything not understood, truncated or corrupt raises `ImageError` naming the
byte offset and what was expected there.
"""

from __future__ import annotations

import bz2
import dataclasses
import lzma
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, NoReturn

import zstandard

from builder.errors import ImageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# A corrupt or hostile stream must not exhaust memory; real kernels are < 100 MiB.
MAX_DECOMPRESSED_SIZE = 512 * MiB
# zstd can expand a few bytes into 128 KiB blocks; feeding small input chunks
# bounds what one call may produce before the size cap is checked again.
ZSTD_INPUT_CHUNK = 4 * KiB
# Longest kernel_version / .uname / banner text we accept before calling it corrupt.
MAX_TEXT = 1024


class Arch(StrEnum):
    """Kernel architectures, named as `uname -m` prints them."""

    X86_64 = "x86_64"
    I386 = "i386"
    AARCH64 = "aarch64"
    RISCV64 = "riscv64"
    PPC64LE = "ppc64le"
    PPC64 = "ppc64"
    S390X = "s390x"


class ImageFormat(StrEnum):
    """The container a kernel comes in."""

    BZIMAGE = "bzImage"
    VMLINUX = "vmlinux"
    IMAGE = "Image"
    ZBOOT = "zboot"
    UKI = "uki"


class Compression(StrEnum):
    """How a kernel (or a zboot payload) is compressed."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"
    LZMA = "lzma"
    BZIP2 = "bzip2"
    LZ4 = "lz4"
    LZO = "lzo"


# ---------------------------------------------------------------------------
# Header offsets, one name per documented field.

# x86 real-mode kernel header (boot.rst, "The Real-Mode Kernel Header").
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

XLF_KERNEL_64 = 1 << 0
XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1
XLF_EFI_HANDOVER_32 = 1 << 2
XLF_EFI_HANDOVER_64 = 1 << 3
XLF_EFI_KEXEC = 1 << 4

# arm64 / RISC-V Image header (64 bytes, little endian; booting.rst, boot-image-header.rst).
IMAGE_TEXT_OFFSET = 8
IMAGE_IMAGE_SIZE = 16
IMAGE_FLAGS = 24
IMAGE_HEADER_SIZE = 64
IMAGE_PE_OFFSET = 60  # res5 / res3: where the PE header is in the EFI-stub form
ARM64_MAGIC_OFFSET = 56
ARM64_MAGIC = b"ARM\x64"
ARM64_FLAG_BIG_ENDIAN = 1 << 0
ARM64_FLAG_PAGE_SIZE_SHIFT = 1
ARM64_FLAG_PAGE_SIZE_MASK = 0x3
ARM64_FLAG_PHYS_ANYWHERE = 1 << 3
ARM64_PAGE_SIZES = {1: 4 * KiB, 2: 16 * KiB, 3: 64 * KiB}
# "The Image must be placed text_offset bytes from a 2MB aligned base address".
ARM64_BASE_ALIGNMENT = 2 * MiB
# Before v3.17 image_size is 0 and text_offset is 0x80000 (booting.rst).
ARM64_LEGACY_TEXT_OFFSET = 0x80000
RISCV_VERSION = 32
RISCV_MAGIC_OFFSET = 48
RISCV_MAGIC = b"RISCV\x00\x00\x00"  # deprecated since header 0.2, still written
RISCV_MAGIC2_OFFSET = 56
RISCV_MAGIC2 = b"RSC\x05"
RISCV_FLAG_BIG_ENDIAN = 1 << 0
# RISC-V kernels run at any PMD-aligned physical address: 2 MiB on rv64.
RISCV64_ALIGNMENT = 2 * MiB

# ELF64 header and program header (System V gABI).
ELF_MAGIC = b"\x7fELF"
ELF_CLASS = 4
ELF_DATA = 5
ELF_CLASS_64 = 2
ELF_DATA_LSB = 1
ELF_DATA_MSB = 2
ELF_TYPE = 16
ELF_MACHINE = 18
ELF_ENTRY = 24
ELF_PHOFF = 32
ELF_SHOFF = 40
ELF_PHENTSIZE = 54
ELF_PHNUM = 56
ELF_SHENTSIZE = 58
ELF_SHNUM = 60
ELF_HEADER_SIZE = 64
ELF_PHDR_SIZE = 56
ELF_SHDR_SIZE = 64
SHDR_TYPE = 4
SHT_DYNAMIC = 6
PT_DYNAMIC = 2
PHDR_TYPE = 0
PHDR_OFFSET = 8
PHDR_VADDR = 16
PHDR_PADDR = 24
PHDR_FILESZ = 32
PHDR_MEMSZ = 40
PHDR_ALIGN = 48
PT_LOAD = 1
ET_EXEC = 2
ET_DYN = 3
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_PPC64 = 21
EM_S390 = 22

# PE/COFF (used by UKIs, the EFI-stub Image and zboot).
DOS_MAGIC = b"MZ"
DOS_PE_POINTER = 0x3C
PE_SIGNATURE = b"PE\x00\x00"
COFF_MACHINE = 4  # offsets relative to the PE signature
COFF_NUMBER_OF_SECTIONS = 6
COFF_SIZE_OF_OPTIONAL_HEADER = 20
COFF_HEADER_END = 24
SECTION_HEADER_SIZE = 40
SECTION_NAME_SIZE = 8
SECTION_VIRTUAL_SIZE = 8
SECTION_VIRTUAL_ADDRESS = 12
SECTION_RAW_SIZE = 16
SECTION_RAW_OFFSET = 20
PE_MACHINE_I386 = 0x014C
PE_MACHINE_X86_64 = 0x8664
PE_MACHINE_ARM64 = 0xAA64
PE_MACHINE_RISCV64 = 0x5064
UKI_KERNEL_SECTION = ".linux"
UKI_INITRD_SECTION = ".initrd"
UKI_CMDLINE_SECTION = ".cmdline"
UKI_UNAME_SECTION = ".uname"

# EFI zboot header (drivers/firmware/efi/libstub/zboot-header.S).
ZBOOT_MAGIC_OFFSET = 4
ZBOOT_MAGIC = b"zimg"
ZBOOT_PAYLOAD_OFFSET = 8
ZBOOT_PAYLOAD_SIZE = 12
ZBOOT_COMPRESSION = 24
ZBOOT_COMPRESSION_END = 0x38  # the string is padded up to LINUX_PE_MAGIC
# Names from Makefile.zboot's comp-type (zstd22 and xzkern are the kernel's spellings).
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

# Leading bytes of compressed streams, as the kernel's Makefiles produce them.
COMPRESSION_MAGICS: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x5d\x00\x00", Compression.LZMA),  # lzma_alone, `lzma -9` properties
    (b"BZh", Compression.BZIP2),
    (b"\x02\x21\x4c\x18", Compression.LZ4),  # legacy frame, as `lz4 -l`
    (b"\x89LZO\x00\r\n\x1a\n", Compression.LZO),
)

_BANNER = re.compile(rb"Linux version (\d[^\s\x00]{0,200})[^\n\x00]{0,800}")


# ---------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class BzImageHeader:
    """x86 setup header fields (boot.rst); None where the protocol predates the field."""

    protocol: int
    setup_sects: int  # as stored: 0 means 4
    kernel_version: str | None
    loadflags: int
    code32_start: int
    relocatable_kernel: bool
    kernel_alignment: int
    min_alignment: int | None  # bytes (the header stores log2)
    pref_address: int | None
    init_size: int | None
    xloadflags: int
    cmdline_size: int
    payload_offset: int | None  # compressed payload, from the protected-mode code start
    payload_length: int | None
    handover_offset: int | None
    kernel_info_offset: int | None
    kernel_offset: int  # (setup_sects + 1) * 512: where protected-mode code starts
    kernel_size: int  # bytes from kernel_offset to the end of the file

    @property
    def protocol_version(self) -> str:
        """The boot protocol as boot.rst writes it, e.g. `2.15`."""
        return f"{self.protocol >> 8}.{self.protocol & 0xFF:02d}"

    @property
    def kernel_64(self) -> bool:
        """Whether the kernel has the 64-bit entry at kernel_offset + 0x200."""
        return bool(self.xloadflags & XLF_KERNEL_64)

    @property
    def loadable_above_4g(self) -> bool:
        """Whether kernel, boot_params and command line may sit above 4 GiB."""
        return bool(self.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G)

    @property
    def efi_handover(self) -> bool:
        """Whether the kernel offers an EFI handover entry (32- or 64-bit)."""
        return bool(self.xloadflags & (XLF_EFI_HANDOVER_32 | XLF_EFI_HANDOVER_64))


@dataclass(frozen=True)
class BootImageHeader:
    """The 64-byte arm64 / RISC-V `Image` header."""

    text_offset: int
    image_size: int  # 0 on pre-3.17 arm64 kernels: unknown
    flags: int
    big_endian: bool
    page_size: int | None  # arm64 only; None when unspecified
    phys_placement_anywhere: bool  # arm64 flag bit 3; always true for RISC-V
    header_version: str | None  # RISC-V header version, e.g. "0.2"
    efi_stub: bool  # the image starts with "MZ" and carries a PE header


@dataclass(frozen=True)
class LoadSegment:
    """One ELF PT_LOAD program header."""

    offset: int
    vaddr: int
    paddr: int
    file_size: int
    memory_size: int
    align: int


@dataclass(frozen=True)
class ElfHeader:
    """What a loader needs from a vmlinux ELF header and its PT_LOAD segments."""

    machine: int
    elf_type: str  # "ET_EXEC" or "ET_DYN"
    big_endian: bool
    entry: int
    segments: tuple[LoadSegment, ...]
    dynamic: bool  # carries a dynamic section: the kernel relocates itself


@dataclass(frozen=True)
class ZbootHeader:
    """The EFI zboot `zimg` header: where the compressed Image is and how it is packed."""

    compression: Compression
    compression_name: str  # as written in the header, e.g. "zstd22"
    payload_offset: int
    payload_size: int
    pe_machine: int | None


@dataclass(frozen=True)
class PeSection:
    """One PE/COFF section header."""

    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_offset: int


@dataclass(frozen=True)
class UkiInfo:
    """What a unified kernel image carries besides its kernel."""

    pe_machine: int
    sections: tuple[PeSection, ...]
    kernel_offset: int
    kernel_size: int
    cmdline: str | None
    uname: str | None
    initrd_size: int | None


@dataclass(frozen=True)
class KernelImage:
    """A parsed kernel image and the placement facts a loader needs.

    For `zboot` and `uki`, `inner` is the embedded kernel and the top-level
    placement fields repeat its values. `entry` is an offset from where the
    image is loaded, except for ELF (`entry_is_address`), where it is e_entry.
    `loadable` holds the bytes a loader hands to kexec: the bzImage file, the
    decompressed Image, the ELF file; for zboot and UKI those of `inner`.
    """

    name: str
    format: ImageFormat
    arch: Arch
    version: str | None
    banner: str | None
    relocatable: bool
    alignment: int
    min_address: int
    max_address: int | None  # the image must end at or below this address
    fixed_address: int | None  # where a non-relocatable image must run, when known
    memory_size: int | None  # bytes needed where it is loaded; None if the image does not say
    load_offset: int  # Image text_offset: bytes from the aligned base to the image
    entry: int
    entry_is_address: bool
    compression: Compression
    file_size: int
    decompressed_size: int | None
    bzimage: BzImageHeader | None = None
    boot_header: BootImageHeader | None = None
    elf: ElfHeader | None = None
    zboot: ZbootHeader | None = None
    uki: UkiInfo | None = None
    inner: KernelImage | None = None
    loadable: bytes = field(default=b"", repr=False, compare=False)

    @property
    def kernel(self) -> KernelImage:
        """The innermost kernel: the one whose headers and bytes a loader uses."""
        return self.inner.kernel if self.inner is not None else self


# ---------------------------------------------------------------------------
# Bounds-checked reading


class _Reader:
    """Reads header fields; every failure is an ImageError naming the offset."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name

    def fail(self, offset: int, message: str) -> NoReturn:
        raise ImageError(f"{self.name}: byte {offset:#x}: {message}")

    def need(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise ImageError(
                f"{self.name}: truncated at byte {offset:#x}: expected {what} "
                f"({size} bytes), but the image ends at byte {len(self.data):#x}"
            )

    def raw(self, offset: int, size: int, what: str) -> bytes:
        self.need(offset, size, what)
        return self.data[offset : offset + size]

    def uint(self, offset: int, size: int, what: str, *, big_endian: bool = False) -> int:
        return int.from_bytes(self.raw(offset, size, what), "big" if big_endian else "little")

    def u8(self, offset: int, what: str) -> int:
        return self.uint(offset, 1, what)

    def u16(self, offset: int, what: str) -> int:
        return self.uint(offset, 2, what)

    def u32(self, offset: int, what: str) -> int:
        return self.uint(offset, 4, what)

    def u64(self, offset: int, what: str) -> int:
        return self.uint(offset, 8, what)

    def expect(self, offset: int, magic: bytes, what: str) -> None:
        found = self.raw(offset, len(magic), what)
        if found != magic:
            self.fail(offset, f"expected {what} {magic!r}, found {found!r}")

    def has(self, offset: int, magic: bytes) -> bool:
        return self.data[offset : offset + len(magic)] == magic

    def cstring(self, offset: int, what: str) -> str:
        """A NUL-terminated ASCII string of at most MAX_TEXT bytes."""
        self.need(offset, 1, what)
        end = self.data.find(b"\x00", offset, offset + MAX_TEXT + 1)
        if end < 0:
            self.fail(offset, f"expected {what} ending in NUL within {MAX_TEXT} bytes")
        return self.data[offset:end].decode("ascii", "replace")


def _printable(raw: bytes) -> str:
    """Text from an image, safe in a one-line message: non-printables escaped."""
    text = raw.decode("latin-1")
    return "".join(c if c.isprintable() and c.isascii() else f"\\x{ord(c):02x}" for c in text)


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _find_banner(data: bytes) -> tuple[str | None, str | None]:
    """(version, banner) from the `Linux version ...` string in an uncompressed kernel.

    Kernels since 6.1 carry a weak placeholder banner (`# SMP`, no build
    number) next to the real one (init/version-timestamp.c), so prefer a
    banner with `#<digits>`.
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


def _decompress(kind: Compression, data: bytes, name: str, offset: int) -> bytes:
    """Decompress one stream, refusing truncated, corrupt or oversized ones."""
    limit = MAX_DECOMPRESSED_SIZE
    where = f"{name}: byte {offset:#x}"
    complete = True
    try:
        if kind is Compression.GZIP:
            gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = gz.decompress(data, limit + 1)
            complete = gz.eof
        elif kind in (Compression.XZ, Compression.LZMA):
            xz = lzma.LZMADecompressor(lzma.FORMAT_AUTO)
            out = xz.decompress(data, limit + 1)
            complete = xz.eof
        elif kind is Compression.BZIP2:
            bz = bz2.BZ2Decompressor()
            out = bz.decompress(data, limit + 1)
            complete = bz.eof
        elif kind is Compression.ZSTD:
            zs = zstandard.ZstdDecompressor().decompressobj()
            chunks: list[bytes] = []
            total = 0
            for start in range(0, len(data), ZSTD_INPUT_CHUNK):
                chunk = zs.decompress(data[start : start + ZSTD_INPUT_CHUNK])
                chunks.append(chunk)
                total += len(chunk)
                if total > limit or zs.eof:
                    break
            out = b"".join(chunks)
            complete = zs.eof
        else:
            raise ImageError(
                f"{where}: {kind} compression is not supported (use gzip, zstd, xz, lzma or bzip2)"
            )
    except (zlib.error, lzma.LZMAError, zstandard.ZstdError, OSError, EOFError, ValueError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{where}: expected valid {kind} data ({detail})") from None
    if len(out) > limit:
        raise ImageError(f"{where}: {kind} data expands beyond {limit // MiB} MiB")
    if not complete:
        raise ImageError(f"{where}: {kind} data is truncated (no end of stream)")
    return out


# ---------------------------------------------------------------------------
# Per-architecture facts


@dataclass(frozen=True)
class ArchInfo:
    """What differs per architecture where formats are shared."""

    arch: Arch
    elf_machine: int | None
    pe_machine: int | None
    image_alignment: int  # Image-format base alignment


ARCHES: dict[Arch, ArchInfo] = {
    info.arch: info
    for info in (
        ArchInfo(Arch.X86_64, EM_X86_64, PE_MACHINE_X86_64, 2 * MiB),
        ArchInfo(Arch.I386, None, PE_MACHINE_I386, 4 * KiB),
        ArchInfo(Arch.AARCH64, EM_AARCH64, PE_MACHINE_ARM64, ARM64_BASE_ALIGNMENT),
        ArchInfo(Arch.RISCV64, EM_RISCV, PE_MACHINE_RISCV64, RISCV64_ALIGNMENT),
        ArchInfo(Arch.PPC64LE, EM_PPC64, None, 64 * KiB),
        ArchInfo(Arch.PPC64, EM_PPC64, None, 64 * KiB),
        ArchInfo(Arch.S390X, EM_S390, None, 4 * KiB),
    )
}


def _arch_for_pe_machine(machine: int) -> Arch | None:
    for info in ARCHES.values():
        if info.pe_machine == machine:
            return info.arch
    return None


# ---------------------------------------------------------------------------
# One class per format. `matches` only looks at magic numbers and never raises;
# `parse` validates everything and raises ImageError.


class _Format:
    format: ClassVar[ImageFormat]

    @classmethod
    def matches(cls, data: bytes) -> bool:
        raise NotImplementedError

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        raise NotImplementedError


class BzImageFormat(_Format):
    """x86 bzImage, boot protocol 2.06 and later (boot.rst)."""

    format = ImageFormat.BZIMAGE

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return data[X86_HEADER : X86_HEADER + 4] == X86_HEADER_MAGIC

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        r = _Reader(data, name)
        r.expect(X86_HEADER, X86_HEADER_MAGIC, "x86 setup header signature")
        boot_flag = r.u16(X86_BOOT_FLAG, "boot_flag")
        if boot_flag != X86_BOOT_FLAG_VALUE:
            r.fail(X86_BOOT_FLAG, f"expected boot_flag 0xaa55, found {boot_flag:#06x}")
        protocol = r.u16(X86_VERSION, "boot protocol version")
        if protocol < X86_PROTOCOL_MIN:
            r.fail(
                X86_VERSION,
                f"expected boot protocol 2.06 or later, "
                f"found {protocol >> 8}.{protocol & 0xFF:02d}",
            )

        def since(version: int, offset: int, size: int, what: str) -> int | None:
            return r.uint(offset, size, what) if protocol >= version else None

        setup_sects = r.u8(X86_SETUP_SECTS, "setup_sects")
        kernel_offset = ((setup_sects or X86_SETUP_SECTS_DEFAULT) + 1) * X86_SECTOR_SIZE
        syssize_bytes = r.u32(X86_SYSSIZE, "syssize") * X86_SYSSIZE_UNIT
        r.need(kernel_offset, syssize_bytes, "protected-mode kernel (setup_sects and syssize)")
        kernel_size = len(data) - kernel_offset

        version_pointer = r.u16(X86_KERNEL_VERSION, "kernel_version pointer")
        kernel_version = (
            r.cstring(version_pointer + X86_KERNEL_VERSION_BASE, "kernel_version string")
            if version_pointer
            else None
        )
        relocatable = r.u8(X86_RELOCATABLE_KERNEL, "relocatable_kernel") != 0
        kernel_alignment = r.u32(X86_KERNEL_ALIGNMENT, "kernel_alignment")
        if relocatable and not _is_power_of_two(kernel_alignment):
            r.fail(
                X86_KERNEL_ALIGNMENT,
                f"expected a power-of-two kernel_alignment, found {kernel_alignment:#x}",
            )
        min_alignment_log2 = since(X86_PROTOCOL_PREF_ADDRESS, X86_MIN_ALIGNMENT, 1, "min_alignment")
        if min_alignment_log2 is not None and min_alignment_log2 > 63:
            r.fail(X86_MIN_ALIGNMENT, f"expected min_alignment <= 63, found {min_alignment_log2}")
        payload_offset = since(X86_PROTOCOL_PAYLOAD, X86_PAYLOAD_OFFSET, 4, "payload_offset")
        payload_length = since(X86_PROTOCOL_PAYLOAD, X86_PAYLOAD_LENGTH, 4, "payload_length")
        if (
            payload_offset is not None
            and payload_length is not None
            and payload_offset + payload_length > kernel_size
        ):
            r.fail(
                X86_PAYLOAD_OFFSET,
                f"expected payload {payload_offset:#x}+{payload_length:#x} inside the "
                f"{kernel_size:#x}-byte protected-mode kernel",
            )
        header = BzImageHeader(
            protocol=protocol,
            setup_sects=setup_sects,
            kernel_version=kernel_version,
            loadflags=r.u8(X86_LOADFLAGS, "loadflags"),
            code32_start=r.u32(X86_CODE32_START, "code32_start"),
            relocatable_kernel=relocatable,
            kernel_alignment=kernel_alignment,
            min_alignment=None if min_alignment_log2 is None else 1 << min_alignment_log2,
            pref_address=since(X86_PROTOCOL_PREF_ADDRESS, X86_PREF_ADDRESS, 8, "pref_address"),
            init_size=since(X86_PROTOCOL_PREF_ADDRESS, X86_INIT_SIZE, 4, "init_size"),
            xloadflags=since(X86_PROTOCOL_XLOADFLAGS, X86_XLOADFLAGS, 2, "xloadflags") or 0,
            cmdline_size=r.u32(X86_CMDLINE_SIZE, "cmdline_size"),
            payload_offset=payload_offset,
            payload_length=payload_length,
            handover_offset=since(X86_PROTOCOL_HANDOVER, X86_HANDOVER_OFFSET, 4, "handover_offset"),
            kernel_info_offset=since(
                X86_PROTOCOL_KERNEL_INFO, X86_KERNEL_INFO_OFFSET, 4, "kernel_info_offset"
            ),
            kernel_offset=kernel_offset,
            kernel_size=kernel_size,
        )
        # The decompressor runs the kernel at LOAD_PHYSICAL_ADDR (= pref_address)
        # whenever it is loaded lower, even if relocatable (head_64.S), so the
        # image only stays inside a crash region placed at or above pref_address.
        run_address = header.pref_address or X86_DEFAULT_LOAD_ADDRESS
        return KernelImage(
            name=name,
            format=ImageFormat.BZIMAGE,
            arch=Arch.X86_64 if header.kernel_64 else Arch.I386,
            version=kernel_version.split()[0]
            if kernel_version and kernel_version.split()
            else None,
            banner=kernel_version,
            relocatable=relocatable,
            alignment=kernel_alignment if _is_power_of_two(kernel_alignment) else 1,
            min_address=max(X86_DEFAULT_LOAD_ADDRESS, run_address),
            max_address=None if header.loadable_above_4g else X86_BELOW_4G,
            fixed_address=None if relocatable else run_address,
            memory_size=header.init_size,
            load_offset=0,
            entry=X86_ENTRY_64 if header.kernel_64 else 0,
            entry_is_address=False,
            compression=Compression.NONE,
            file_size=len(data),
            decompressed_size=None,
            bzimage=header,
            loadable=data,
        )


class _BootImageFormat(_Format):
    """Shared parsing of the arm64 and RISC-V 64-byte Image header."""

    format = ImageFormat.IMAGE
    arch: ClassVar[Arch]

    @classmethod
    def _header(cls, r: _Reader) -> BootImageHeader:
        raise NotImplementedError

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        r = _Reader(data, name)
        r.need(0, IMAGE_HEADER_SIZE, f"{cls.arch} Image header")
        header = cls._header(r)
        if header.big_endian:
            r.fail(IMAGE_FLAGS, "expected a little-endian kernel (flags bit 0 clear)")
        if header.efi_stub:
            machine, sections = _pe_sections(r)
            expected = ARCHES[cls.arch].pe_machine
            if machine != expected:
                r.fail(
                    r.u32(DOS_PE_POINTER, "PE header offset") + COFF_MACHINE,
                    f"expected PE machine {expected:#x} for {cls.arch}, found {machine:#x}",
                )
            # A plain Image cannot tell it was cut short; its PE sections can.
            for section in sections:
                r.need(section.raw_offset, section.raw_size, f"PE section {section.name} contents")
        version, banner = _find_banner(data)
        return KernelImage(
            name=name,
            format=ImageFormat.IMAGE,
            arch=cls.arch,
            version=version,
            banner=banner,
            relocatable=header.phys_placement_anywhere,
            alignment=ARCHES[cls.arch].image_alignment,
            min_address=0,
            max_address=None,
            fixed_address=None,
            memory_size=header.image_size or None,
            load_offset=header.text_offset,
            entry=0,
            entry_is_address=False,
            compression=Compression.NONE,
            file_size=len(data),
            decompressed_size=None,
            boot_header=header,
            loadable=data,
        )


class Arm64ImageFormat(_BootImageFormat):
    """arm64 `Image` (booting.rst), also in the EFI-stub PE form Debian ships."""

    arch = Arch.AARCH64

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return data[ARM64_MAGIC_OFFSET : ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC

    @classmethod
    def _header(cls, r: _Reader) -> BootImageHeader:
        r.expect(ARM64_MAGIC_OFFSET, ARM64_MAGIC, "arm64 Image magic")
        image_size = r.u64(IMAGE_IMAGE_SIZE, "image_size")
        flags = r.u64(IMAGE_FLAGS, "flags")
        text_offset = r.u64(IMAGE_TEXT_OFFSET, "text_offset")
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
            efi_stub=r.has(0, DOS_MAGIC),
        )


class RiscvImageFormat(_BootImageFormat):
    """RISC-V 64-bit `Image` (boot-image-header.rst)."""

    arch = Arch.RISCV64

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return (
            data[RISCV_MAGIC2_OFFSET : RISCV_MAGIC2_OFFSET + 4] == RISCV_MAGIC2
            or data[RISCV_MAGIC_OFFSET : RISCV_MAGIC_OFFSET + 8] == RISCV_MAGIC
        )

    @classmethod
    def _header(cls, r: _Reader) -> BootImageHeader:
        # Header 0.1 had only the first magic; 0.2 added magic2 where arm64 has its own.
        if not (r.has(RISCV_MAGIC2_OFFSET, RISCV_MAGIC2) or r.has(RISCV_MAGIC_OFFSET, RISCV_MAGIC)):
            r.expect(RISCV_MAGIC2_OFFSET, RISCV_MAGIC2, "RISC-V Image magic2")
        flags = r.u64(IMAGE_FLAGS, "flags")
        version = r.u32(RISCV_VERSION, "header version")
        return BootImageHeader(
            text_offset=r.u64(IMAGE_TEXT_OFFSET, "text_offset"),
            image_size=r.u64(IMAGE_IMAGE_SIZE, "image_size"),
            flags=flags,
            big_endian=bool(flags & RISCV_FLAG_BIG_ENDIAN),
            page_size=None,
            # The kernel sets up its mapping from wherever it was put (PMD aligned).
            phys_placement_anywhere=True,
            header_version=f"{version >> 16}.{version & 0xFFFF}",
            efi_stub=r.has(0, DOS_MAGIC),
        )


class ElfFormat(_Format):
    """vmlinux: a 64-bit ELF kernel (x86_64, aarch64, riscv64, ppc64le, s390x)."""

    format = ImageFormat.VMLINUX

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return data[:4] == ELF_MAGIC

    @classmethod
    def _arch(cls, r: _Reader, machine: int, big_endian: bool) -> Arch:
        if machine == EM_PPC64:
            return Arch.PPC64 if big_endian else Arch.PPC64LE
        for info in ARCHES.values():
            if info.elf_machine == machine:
                return info.arch
        r.fail(
            ELF_MACHINE,
            "expected a kernel machine type (x86_64, aarch64, riscv64, ppc64, s390x), "
            f"found e_machine {machine}",
        )

    @classmethod
    def _has_dynamic_section(cls, r: _Reader, field_: Callable[[int, int, str], int]) -> bool:
        shoff = field_(ELF_SHOFF, 8, "e_shoff")
        shnum = field_(ELF_SHNUM, 2, "e_shnum")
        if shoff == 0 or shnum == 0:
            return False  # stripped of section headers
        shentsize = field_(ELF_SHENTSIZE, 2, "e_shentsize")
        if shentsize != ELF_SHDR_SIZE:
            r.fail(ELF_SHENTSIZE, f"expected e_shentsize {ELF_SHDR_SIZE}, found {shentsize}")
        # Section headers sit at the end of the file: a cut-off vmlinux fails here.
        r.need(shoff, shnum * ELF_SHDR_SIZE, f"{shnum} section headers")
        return any(
            field_(shoff + index * ELF_SHDR_SIZE + SHDR_TYPE, 4, "sh_type") == SHT_DYNAMIC
            for index in range(shnum)
        )

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        r = _Reader(data, name)
        r.expect(0, ELF_MAGIC, "ELF magic")
        elf_class = r.u8(ELF_CLASS, "EI_CLASS")
        if elf_class != ELF_CLASS_64:
            r.fail(ELF_CLASS, f"expected ELFCLASS64 (a 64-bit kernel), found class {elf_class}")
        encoding = r.u8(ELF_DATA, "EI_DATA")
        if encoding not in (ELF_DATA_LSB, ELF_DATA_MSB):
            r.fail(ELF_DATA, f"expected ELFDATA2LSB or ELFDATA2MSB, found {encoding}")
        big = encoding == ELF_DATA_MSB
        r.need(0, ELF_HEADER_SIZE, "ELF64 header")

        def field_(offset: int, size: int, what: str) -> int:
            return r.uint(offset, size, what, big_endian=big)

        elf_type = field_(ELF_TYPE, 2, "e_type")
        if elf_type not in (ET_EXEC, ET_DYN):
            r.fail(ELF_TYPE, f"expected e_type ET_EXEC or ET_DYN, found {elf_type}")
        machine = field_(ELF_MACHINE, 2, "e_machine")
        arch = cls._arch(r, machine, big)
        entry = field_(ELF_ENTRY, 8, "e_entry")
        phoff = field_(ELF_PHOFF, 8, "e_phoff")
        phentsize = field_(ELF_PHENTSIZE, 2, "e_phentsize")
        phnum = field_(ELF_PHNUM, 2, "e_phnum")
        if phentsize != ELF_PHDR_SIZE:
            r.fail(ELF_PHENTSIZE, f"expected e_phentsize {ELF_PHDR_SIZE}, found {phentsize}")
        r.need(phoff, phnum * ELF_PHDR_SIZE, f"{phnum} program headers")
        segments: list[LoadSegment] = []
        dynamic = False
        for index in range(phnum):
            base = phoff + index * ELF_PHDR_SIZE
            segment_type = field_(base + PHDR_TYPE, 4, "p_type")
            dynamic = dynamic or segment_type == PT_DYNAMIC
            if segment_type != PT_LOAD:
                continue
            segment = LoadSegment(
                offset=field_(base + PHDR_OFFSET, 8, "p_offset"),
                vaddr=field_(base + PHDR_VADDR, 8, "p_vaddr"),
                paddr=field_(base + PHDR_PADDR, 8, "p_paddr"),
                file_size=field_(base + PHDR_FILESZ, 8, "p_filesz"),
                memory_size=field_(base + PHDR_MEMSZ, 8, "p_memsz"),
                align=field_(base + PHDR_ALIGN, 8, "p_align"),
            )
            if segment.memory_size < segment.file_size:
                r.fail(base + PHDR_MEMSZ, f"expected p_memsz >= p_filesz in program header {index}")
            if max(segment.paddr, segment.vaddr) + segment.memory_size > 1 << 64:
                r.fail(base + PHDR_MEMSZ, f"expected program header {index} inside 64-bit memory")
            r.need(segment.offset, segment.file_size, f"contents of PT_LOAD {index}")
            segments.append(segment)
        if not segments:
            r.fail(ELF_PHNUM, "expected at least one PT_LOAD program header")
        dynamic = dynamic or cls._has_dynamic_section(r, field_)
        # ppc64 links its relocatable vmlinux as ET_EXEC with a .dynamic section
        # that its early boot code applies, so the section counts as much as ET_DYN.
        relocatable = elf_type == ET_DYN or dynamic
        # A fixed image runs at its physical addresses; a relocatable one keeps
        # the distances between its virtual ones.
        starts = [s.vaddr if relocatable else s.paddr for s in segments]
        ends = [start + s.memory_size for start, s in zip(starts, segments, strict=True)]
        alignment = max(s.align for s in segments)
        if not _is_power_of_two(alignment):
            alignment = ARCHES[arch].image_alignment
        version, banner = _find_banner(data)
        return KernelImage(
            name=name,
            format=ImageFormat.VMLINUX,
            arch=arch,
            version=version,
            banner=banner,
            relocatable=relocatable,
            alignment=alignment,
            min_address=0 if relocatable else min(starts),
            max_address=None,
            fixed_address=None if relocatable else min(starts),
            memory_size=max(ends) - min(starts),
            load_offset=0,
            entry=entry,
            entry_is_address=True,
            compression=Compression.NONE,
            file_size=len(data),
            decompressed_size=None,
            elf=ElfHeader(
                machine=machine,
                elf_type="ET_DYN" if elf_type == ET_DYN else "ET_EXEC",
                big_endian=big,
                entry=entry,
                segments=tuple(segments),
                dynamic=dynamic,
            ),
            loadable=data,
        )


def _pe_sections(r: _Reader) -> tuple[int, tuple[PeSection, ...]]:
    """(machine, sections) of a PE/COFF image."""
    r.expect(0, DOS_MAGIC, "DOS header magic")
    pe = r.u32(DOS_PE_POINTER, "PE header offset")
    r.expect(pe, PE_SIGNATURE, "PE signature")
    machine = r.u16(pe + COFF_MACHINE, "COFF Machine")
    count = r.u16(pe + COFF_NUMBER_OF_SECTIONS, "COFF NumberOfSections")
    optional_size = r.u16(pe + COFF_SIZE_OF_OPTIONAL_HEADER, "COFF SizeOfOptionalHeader")
    table = pe + COFF_HEADER_END + optional_size
    r.need(table, count * SECTION_HEADER_SIZE, f"{count} PE section headers")
    sections = []
    for index in range(count):
        base = table + index * SECTION_HEADER_SIZE
        raw_name = r.raw(base, SECTION_NAME_SIZE, "section name")
        sections.append(
            PeSection(
                name=_printable(raw_name.rstrip(b"\x00")),
                virtual_size=r.u32(base + SECTION_VIRTUAL_SIZE, "section VirtualSize"),
                virtual_address=r.u32(base + SECTION_VIRTUAL_ADDRESS, "section VirtualAddress"),
                raw_size=r.u32(base + SECTION_RAW_SIZE, "section SizeOfRawData"),
                raw_offset=r.u32(base + SECTION_RAW_OFFSET, "section PointerToRawData"),
            )
        )
    return machine, tuple(sections)


def _section_bytes(r: _Reader, section: PeSection) -> bytes:
    # VirtualSize is the true length; SizeOfRawData is rounded up to FileAlignment.
    size = section.raw_size
    if 0 < section.virtual_size < size:
        size = section.virtual_size
    return r.raw(section.raw_offset, size, f"contents of PE section {section.name}")


def _section_text(r: _Reader, section: PeSection | None) -> str | None:
    if section is None:
        return None
    text = _section_bytes(r, section)[:MAX_TEXT].decode("utf-8", "replace")
    return text.rstrip("\x00").strip()


def _wrap(
    outer_format: ImageFormat,
    data: bytes,
    name: str,
    inner: KernelImage,
    **extra: object,
) -> KernelImage:
    """A container image whose placement facts are those of its embedded kernel."""
    # The embedded kernel's own headers stay on `inner` only.
    changes: dict[str, object] = dict.fromkeys(("bzimage", "boot_header", "elf", "zboot", "uki"))
    changes.update(extra)
    return dataclasses.replace(
        inner,
        name=name,
        format=outer_format,
        file_size=len(data),
        inner=inner,
        **changes,  # type: ignore[arg-type]
    )


class ZbootFormat(_Format):
    """EFI zboot: a PE stub carrying a compressed arm64 or RISC-V Image."""

    format = ImageFormat.ZBOOT

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return (
            data[:2] == DOS_MAGIC
            and data[ZBOOT_MAGIC_OFFSET : ZBOOT_MAGIC_OFFSET + 4] == ZBOOT_MAGIC
        )

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        r = _Reader(data, name)
        r.expect(0, DOS_MAGIC, "DOS header magic")
        r.expect(ZBOOT_MAGIC_OFFSET, ZBOOT_MAGIC, "zboot image type")
        payload_offset = r.u32(ZBOOT_PAYLOAD_OFFSET, "zboot payload offset")
        payload_size = r.u32(ZBOOT_PAYLOAD_SIZE, "zboot payload size")
        comp_field = r.raw(
            ZBOOT_COMPRESSION, ZBOOT_COMPRESSION_END - ZBOOT_COMPRESSION, "compression type"
        )
        comp_name = comp_field.split(b"\x00", 1)[0].decode("ascii", "replace")
        compression = ZBOOT_COMPRESSIONS.get(comp_name)
        if compression is None:
            known = ", ".join(sorted(ZBOOT_COMPRESSIONS))
            r.fail(ZBOOT_COMPRESSION, f"expected a compression type ({known}), found {comp_name!r}")
        payload = r.raw(payload_offset, payload_size, "zboot compressed payload")
        try:
            machine: int | None = _pe_sections(r)[0]
        except ImageError:
            machine = None  # the PE part only matters to firmware
        inner_data = _decompress(compression, payload, name, payload_offset)
        inner_name = f"{name} (zboot payload)"
        inner = _parse(inner_data, inner_name, (Arm64ImageFormat, RiscvImageFormat))
        expected_arch = _arch_for_pe_machine(machine) if machine is not None else None
        if expected_arch is not None and expected_arch != inner.arch:
            r.fail(
                0,
                f"expected a {expected_arch} Image inside this {expected_arch} PE, "
                f"found {inner.arch}",
            )
        header = ZbootHeader(compression, comp_name, payload_offset, payload_size, machine)
        return _wrap(
            ImageFormat.ZBOOT,
            data,
            name,
            inner,
            zboot=header,
            compression=compression,
            decompressed_size=len(inner_data),
        )


class UkiFormat(_Format):
    """Unified kernel image: a PE with `.linux` (and `.initrd`, `.cmdline`, `.uname`)."""

    format = ImageFormat.UKI

    @classmethod
    def matches(cls, data: bytes) -> bool:
        if data[:2] != DOS_MAGIC:
            return False
        try:
            _, sections = _pe_sections(_Reader(data, ""))
        except ImageError:
            return False
        return any(section.name == UKI_KERNEL_SECTION for section in sections)

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        r = _Reader(data, name)
        machine, sections = _pe_sections(r)
        by_name = {section.name: section for section in sections}
        linux = by_name.get(UKI_KERNEL_SECTION)
        if linux is None:
            found = ", ".join(s.name for s in sections[:8]) or "none"
            r.fail(DOS_PE_POINTER, f"expected a PE section {UKI_KERNEL_SECTION} (found {found})")
        kernel = _section_bytes(r, linux)
        inner = _parse(
            kernel,
            f"{name} ({UKI_KERNEL_SECTION} at {linux.raw_offset:#x})",
            (BzImageFormat, ZbootFormat, Arm64ImageFormat, RiscvImageFormat, CompressedFormat),
        )
        initrd = by_name.get(UKI_INITRD_SECTION)
        info = UkiInfo(
            pe_machine=machine,
            sections=sections,
            kernel_offset=linux.raw_offset,
            kernel_size=len(kernel),
            cmdline=_section_text(r, by_name.get(UKI_CMDLINE_SECTION)),
            uname=_section_text(r, by_name.get(UKI_UNAME_SECTION)),
            initrd_size=len(_section_bytes(r, initrd)) if initrd is not None else None,
        )
        return _wrap(
            ImageFormat.UKI, data, name, inner, uki=info, version=inner.version or info.uname
        )


class CompressedFormat(_Format):
    """A compressed kernel (Image.gz, Image.zst, ...): decompress, then parse what is inside."""

    format = ImageFormat.IMAGE

    @classmethod
    def compression(cls, data: bytes) -> Compression | None:
        for magic, kind in COMPRESSION_MAGICS:
            if data.startswith(magic):
                return kind
        return None

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return cls.compression(data) is not None

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        kind = cls.compression(data)
        if kind is None:
            _Reader(data, name).fail(0, "expected gzip, zstd, xz, lzma or bzip2 data")
        inner_data = _decompress(kind, data, name, 0)
        inner = _parse(
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


# Detection order matters: a UKI and an x86 EFI-stub bzImage are both PE files,
# and a zboot image is a PE too; only the checks below tell them apart.
FORMATS: tuple[type[_Format], ...] = (
    UkiFormat,
    ZbootFormat,
    BzImageFormat,
    Arm64ImageFormat,
    RiscvImageFormat,
    ElfFormat,
    CompressedFormat,
)


def _parse(data: bytes, name: str, allowed: tuple[type[_Format], ...]) -> KernelImage:
    for candidate in allowed:
        if candidate.matches(data):
            return candidate.parse(data, name)
    kinds = ", ".join(sorted({str(f.format) for f in allowed}))
    head = data[:8].hex(" ") or "nothing"
    raise ImageError(f"{name}: byte 0x0: expected a kernel image ({kinds}), found {head}")


def parse_kernel_image(data: bytes, name: str = "<image>") -> KernelImage:
    """Identify and parse a kernel image of any supported format.

    `name` is used in error messages (usually the file's path).

    >>> data = Path("/boot/vmlinuz-6.1.0-28-amd64").read_bytes()  # doctest: +SKIP
    >>> image = parse_kernel_image(data, "/boot/vmlinuz-6.1.0-28-amd64")  # doctest: +SKIP
    >>> image.format, image.arch, image.relocatable  # doctest: +SKIP
    (<ImageFormat.BZIMAGE: 'bzImage'>, <Arch.X86_64: 'x86_64'>, True)
    """
    return _parse(data, name, FORMATS)


def _jsonable(value: object) -> object:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


_HEADER_VIEWS: tuple[tuple[str, Callable[[KernelImage], object]], ...] = (
    ("bzimage", lambda image: image.bzimage),
    ("image_header", lambda image: image.boot_header),
    ("elf", lambda image: image.elf),
    ("zboot", lambda image: image.zboot),
    ("uki", lambda image: image.uki),
)


def describe(image: KernelImage) -> dict[str, object]:
    """A JSON-ready summary of an image (the `inspect --json` output).

    Integers stay integers; a format's own header appears under its key
    (`bzimage`, `image_header`, `elf`, `zboot`, `uki`), an embedded kernel
    under `inner`.

    >>> describe(parse_kernel_image(data))["memory_size"]  # doctest: +SKIP
    66682880
    """
    summary: dict[str, object] = {
        "name": image.name,
        "arch": str(image.arch),
        "format": str(image.format),
        "version": image.version,
        "banner": image.banner,
        "relocatable": image.relocatable,
        "alignment": image.alignment,
        "min_address": image.min_address,
        "max_address": image.max_address,
        "fixed_address": image.fixed_address,
        "memory_size": image.memory_size,
        "load_offset": image.load_offset,
        "entry": image.entry,
        "entry_is_address": image.entry_is_address,
        "compression": str(image.compression),
        "file_size": image.file_size,
        "decompressed_size": image.decompressed_size,
    }
    for key, view in _HEADER_VIEWS:
        header = view(image)
        if header is not None and dataclasses.is_dataclass(header):
            fields = _jsonable(dataclasses.asdict(header))  # type: ignore[arg-type]
            if isinstance(header, BzImageHeader) and isinstance(fields, dict):
                fields["protocol_version"] = header.protocol_version
            summary[key] = fields
    if image.inner is not None:
        summary["inner"] = describe(image.inner)
    return summary
