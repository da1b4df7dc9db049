"""PE/COFF headers, as far as kernels need them: the machine and the section table.

UKIs, zboot images and the arm64 / RISC-V EFI-stub Image are PE files
(the PE/COFF specification, "MS-DOS Stub", "COFF File Header", "Section Table").
"""

from __future__ import annotations

from builder.binfmt.kernelimg.base import printable
from builder.binfmt.kernelimg.model import PeSection
from builder.binfmt.reader import MAX_TEXT, ByteReader

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


def machine_offset(reader: ByteReader) -> int:
    """Where the COFF Machine field is (for messages about it)."""
    return reader.u32(DOS_PE_POINTER, "PE header offset") + COFF_MACHINE


def pe_sections(reader: ByteReader) -> tuple[int, tuple[PeSection, ...]]:
    """(machine, sections) of a PE/COFF image.

    >>> from builder.binfmt.kernelimg.base import image_reader
    >>> head = bytearray(0x40); head[:2] = DOS_MAGIC; head[DOS_PE_POINTER] = 0x40
    >>> coff = PE_SIGNATURE + (0xAA64).to_bytes(2, "little") + bytes(18)
    >>> pe_sections(image_reader(bytes(head) + coff, "stub.efi"))
    (43620, ())
    """
    reader.expect(0, DOS_MAGIC, "DOS header magic")
    pe = reader.u32(DOS_PE_POINTER, "PE header offset")
    reader.expect(pe, PE_SIGNATURE, "PE signature")
    machine = reader.u16(pe + COFF_MACHINE, "COFF Machine")
    count = reader.u16(pe + COFF_NUMBER_OF_SECTIONS, "COFF NumberOfSections")
    optional_size = reader.u16(pe + COFF_SIZE_OF_OPTIONAL_HEADER, "COFF SizeOfOptionalHeader")
    table = pe + COFF_HEADER_END + optional_size
    reader.need(table, count * SECTION_HEADER_SIZE, f"{count} PE section headers")
    sections = tuple(
        _section(reader, table + index * SECTION_HEADER_SIZE) for index in range(count)
    )
    return machine, sections


def _section(reader: ByteReader, base: int) -> PeSection:
    raw_name = reader.raw(base, SECTION_NAME_SIZE, "section name")
    return PeSection(
        name=printable(raw_name.rstrip(b"\x00")),
        virtual_size=reader.u32(base + SECTION_VIRTUAL_SIZE, "section VirtualSize"),
        virtual_address=reader.u32(base + SECTION_VIRTUAL_ADDRESS, "section VirtualAddress"),
        raw_size=reader.u32(base + SECTION_RAW_SIZE, "section SizeOfRawData"),
        raw_offset=reader.u32(base + SECTION_RAW_OFFSET, "section PointerToRawData"),
    )


def section_bytes(reader: ByteReader, section: PeSection) -> bytes:
    """A section's contents: VirtualSize bytes, as SizeOfRawData is rounded up to FileAlignment."""
    size = section.raw_size
    if 0 < section.virtual_size < size:
        size = section.virtual_size
    return reader.raw(section.raw_offset, size, f"contents of PE section {section.name}")


def section_text(reader: ByteReader, section: PeSection | None) -> str | None:
    """A text section (`.cmdline`, `.uname`) without its NUL padding, or None when absent."""
    if section is None:
        return None
    text = section_bytes(reader, section)[:MAX_TEXT].decode("utf-8", "replace")
    return text.rstrip("\x00").strip()
