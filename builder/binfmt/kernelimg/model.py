"""What parsing a kernel image gives: the format, its headers, and the placement facts.

These are plain frozen records; the parsers (bzimage, image, vmlinux, zboot,
uki, compressed) fill them and `describe` turns them into JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from builder.arch import Arch
from builder.compression import Compression


class ImageFormat(StrEnum):
    """The container a kernel comes in."""

    BZIMAGE = "bzImage"
    VMLINUX = "vmlinux"
    IMAGE = "Image"
    ZBOOT = "zboot"
    UKI = "uki"


# xloadflags bits of the x86 setup header (boot.rst).
XLF_KERNEL_64 = 1 << 0
XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1
XLF_EFI_HANDOVER_32 = 1 << 2
XLF_EFI_HANDOVER_64 = 1 << 3
XLF_EFI_KEXEC = 1 << 4


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


# Each format's own header; a container (zboot, UKI) has its own, its kernel's stays on `inner`.
FormatHeader = BzImageHeader | BootImageHeader | ElfHeader | ZbootHeader | UkiInfo


@dataclass(frozen=True)
class Placement:
    """Where a kernel may be loaded and entered: what every loader needs, in every format.

    The image goes at an address `A` with `A % alignment == 0`,
    `A >= min_address` and `A + load_offset + memory_size <= max_address`
    (when set); a non-relocatable image must use exactly `fixed_address`.
    """

    relocatable: bool
    alignment: int
    min_address: int
    max_address: int | None  # the image must end at or below this address
    fixed_address: int | None  # where a non-relocatable image must run, when known
    memory_size: int | None  # bytes needed where it is loaded; None if the image does not say
    load_offset: int  # Image text_offset: bytes from the aligned base to the image
    entry: int
    entry_is_address: bool


@dataclass(frozen=True)
class KernelImage:
    """A parsed kernel image: the facts every format has, and its format's own header.

    For `zboot` and `uki`, `inner` is the embedded kernel and `placement`
    repeats its. `placement.entry` is an offset from where the image is
    loaded, except for ELF (`entry_is_address`), where it is e_entry.
    `loadable` holds the bytes a loader hands to kexec: the bzImage file, the
    decompressed Image, the ELF file; for zboot and UKI those of `inner`.
    """

    name: str
    format: ImageFormat
    arch: Arch
    version: str | None
    banner: str | None
    placement: Placement
    compression: Compression
    file_size: int
    decompressed_size: int | None
    header: FormatHeader
    inner: KernelImage | None = None
    loadable: bytes = field(default=b"", repr=False, compare=False)

    @property
    def bzimage(self) -> BzImageHeader | None:
        """The x86 setup header, when this is a bzImage."""
        return self.header if isinstance(self.header, BzImageHeader) else None

    @property
    def boot_header(self) -> BootImageHeader | None:
        """The arm64 / RISC-V Image header, when this is an Image (compressed or not)."""
        return self.header if isinstance(self.header, BootImageHeader) else None

    @property
    def elf(self) -> ElfHeader | None:
        """The ELF header and PT_LOADs, when this is a vmlinux."""
        return self.header if isinstance(self.header, ElfHeader) else None

    @property
    def zboot(self) -> ZbootHeader | None:
        """The zboot header, when this is an EFI zboot image."""
        return self.header if isinstance(self.header, ZbootHeader) else None

    @property
    def uki(self) -> UkiInfo | None:
        """What a unified kernel image carries, when this is one."""
        return self.header if isinstance(self.header, UkiInfo) else None

    @property
    def kernel(self) -> KernelImage:
        """The innermost kernel: the one whose headers and bytes a loader uses."""
        return self.inner.kernel if self.inner is not None else self
