"""ELF files, read with bounds checks: the one ELF reader of kdump-build.

It serves every caller that meets ELF: vmlinux kernel images, kernel
modules (`.modinfo`), programs and libraries (PT_INTERP, DT_NEEDED,
DT_RUNPATH/DT_RPATH), /proc/kcore's program headers and the purgatory
object (sections, symbols, RELA relocations). Both classes and byte orders
are read (System V gABI); nothing is executed or mapped. A truncated or
corrupt file is one error of the caller's type naming the byte offset;
tests compare it with readelf and pyelftools on real Debian packages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import NoReturn

from builder.binfmt.reader import ByteReader
from builder.errors import FormatError, KdumpBuildError, shown

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2

ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
ELF_TYPE_NAMES = {0: "ET_NONE", ET_REL: "ET_REL", ET_EXEC: "ET_EXEC", ET_DYN: "ET_DYN",
                  ET_CORE: "ET_CORE"}  # fmt: skip

PT_NULL, PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 0, 1, 2, 3, 4
PF_X, PF_W, PF_R = 1, 2, 4

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_DYNAMIC, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 6, 8, 9, 11
SHF_ALLOC = 0x2

SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF
PN_XNUM = 0xFFFF
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2

DT_NULL, DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 1, 5, 15, 29

EHDR64_SIZE = 64
PHDR64_SIZE = 56
SHDR64_SIZE = 64

# Layouts per class: (struct format without byte order, field names).
_EHDR = {
    ELFCLASS64: ("HHIQQQIHHHHHH", 16),
    ELFCLASS32: ("HHIIIIIHHHHHH", 16),
}
_PHDR = {ELFCLASS64: "IIQQQQQQ", ELFCLASS32: "IIIIIIII"}
_SHDR = {ELFCLASS64: "IIQQQQIIQQ", ELFCLASS32: "IIIIIIIIII"}
_SHDR_SIZE = {klass: struct.calcsize("<" + layout) for klass, layout in _SHDR.items()}
_SYM = {ELFCLASS64: "IBBHQQ", ELFCLASS32: "IIIBBH"}
_RELA = {ELFCLASS64: "QQq", ELFCLASS32: "IIi"}
_REL = {ELFCLASS64: "QQ", ELFCLASS32: "II"}
_DYN = {ELFCLASS64: "qQ", ELFCLASS32: "iI"}


@dataclass(frozen=True)
class ProgramHeader:
    """One program header; `at` is where it sits in the file (for messages)."""

    index: int
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int
    at: int


@dataclass(frozen=True)
class Section:
    """One section header, with its name resolved; `at` is where the header sits."""

    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int
    at: int


@dataclass(frozen=True)
class Symbol:
    """One symbol table entry."""

    index: int
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int


@dataclass(frozen=True)
class Relocation:
    """One relocation entry; `addend` is 0 for REL sections."""

    offset: int
    symbol: int
    type: int
    addend: int


@dataclass(frozen=True)
class DynamicInfo:
    """What the dynamic loader reads from the dynamic section."""

    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    rpath: tuple[str, ...]


class ElfFile:
    """An ELF file in memory: header fields, program headers, sections, symbols.

    `error` is the exception type raised for anything malformed (default
    `FormatError`); `name` starts its messages. Program headers and sections
    are decoded when first asked for, so reading only the program headers
    of /proc/kcore, or only `.modinfo` of a module, touches nothing else.

    >>> elf = ElfFile(_tiny_elf(), "tiny")
    >>> elf.elf_class, elf.big_endian, elf.type_name, elf.machine
    (64, False, 'ET_EXEC', 62)
    >>> ElfFile(b"\\x7fELF\\x02\\x01", "cut")
    Traceback (most recent call last):
    ...
    builder.errors.FormatError: cut: truncated at byte 0x0: expected ELF header (64 bytes), ...
    """

    def __init__(self, data: bytes, name: str, error: type[KdumpBuildError] = FormatError) -> None:
        self.data = data
        self.name = name
        self.reader = ByteReader(data, name, error, noun="file")
        reader = self.reader
        reader.expect(0, ELF_MAGIC, "ELF magic")
        klass = reader.u8(4, "EI_CLASS")
        if klass not in (ELFCLASS32, ELFCLASS64):
            reader.fail(4, f"expected ELFCLASS32 or ELFCLASS64, found class {klass}")
        encoding = reader.u8(5, "EI_DATA")
        if encoding not in (ELFDATA2LSB, ELFDATA2MSB):
            reader.fail(5, f"expected ELFDATA2LSB or ELFDATA2MSB, found {encoding}")
        self._class = klass
        self.big_endian = encoding == ELFDATA2MSB
        self._order = ">" if self.big_endian else "<"
        layout, start = _EHDR[klass]
        size = start + struct.calcsize("<" + layout)
        reader.need(0, size, "ELF header")
        fields = struct.unpack_from(self._order + layout, data, start)
        (self.type, self.machine, self.version, self.entry, self.phoff, self.shoff,
         self.flags, self.ehsize, self.phentsize, self._phnum, self.shentsize,
         self._shnum, self._shstrndx) = fields  # fmt: skip

    # ------------------------------------------------------------------ header

    @property
    def elf_class(self) -> int:
        """32 or 64."""
        return 64 if self._class == ELFCLASS64 else 32

    @property
    def type_name(self) -> str:
        """e_type as its gABI name (`ET_REL`, `ET_EXEC`, ...)."""
        return ELF_TYPE_NAMES.get(self.type, f"type {self.type}")

    def fail(self, offset: int, message: str) -> NoReturn:
        self.reader.fail(offset, message)

    def _unpack(self, layout: str, offset: int, what: str) -> tuple[int, ...]:
        fmt = self._order + layout
        self.reader.need(offset, struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, offset)

    # ------------------------------------------------------------------ program headers

    @cached_property
    def program_headers(self) -> tuple[ProgramHeader, ...]:
        """Every program header, in file order."""
        count = self._phnum
        zero = self._section_zero() if count == PN_XNUM else None
        if zero is not None:
            count = zero[7]  # sh_info of section 0 holds the real count
        if count == 0:
            return ()
        layout = _PHDR[self._class]
        expected = struct.calcsize("<" + layout)
        if self.phentsize != expected:
            self.fail(42 if self._class == ELFCLASS32 else 54,
                      f"expected e_phentsize {expected}, found {self.phentsize}")  # fmt: skip
        self.reader.need(self.phoff, count * expected, f"{count} program headers")
        headers = []
        for index in range(count):
            at = self.phoff + index * expected
            fields = self._unpack(layout, at, "program header")
            if self._class == ELFCLASS64:
                kind, flags, offset, vaddr, paddr, filesz, memsz, align = fields
            else:
                kind, offset, vaddr, paddr, filesz, memsz, flags, align = fields
            headers.append(ProgramHeader(index, kind, flags, offset, vaddr, paddr, filesz,
                                         memsz, align, at))  # fmt: skip
        return tuple(headers)

    @property
    def program_headers_end(self) -> int:
        """Where the program header table ends (e_phnum counted): what a reader needs
        of a file it reads only the headers of, such as /proc/kcore."""
        return int(max(self.ehsize, self.phoff + self._phnum * self.phentsize))

    def segments(self, kind: int) -> tuple[ProgramHeader, ...]:
        """The program headers of type `kind` (PT_LOAD, PT_NOTE, ...)."""
        return tuple(header for header in self.program_headers if header.type == kind)

    def segment_data(self, header: ProgramHeader) -> bytes:
        """The file bytes of a segment (p_filesz of them)."""
        return self.reader.raw(header.offset, header.filesz, f"contents of program header "
                               f"{header.index}")  # fmt: skip

    def interpreter(self) -> str:
        """The PT_INTERP path (the dynamic loader), or "" for a static file."""
        for header in self.segments(PT_INTERP):
            return self.segment_data(header).split(b"\0", 1)[0].decode("utf-8", "replace")
        return ""

    # ------------------------------------------------------------------ sections

    def _section_zero(self) -> tuple[int, ...] | None:
        if self.shoff == 0:
            return None
        return self._unpack(_SHDR[self._class], self.shoff, "section header 0")

    @cached_property
    def _section_table(self) -> tuple[list[tuple[int, ...]], bytes]:
        """The raw section header rows and the section name table (both unchecked)."""
        if self.shoff == 0:
            return [], b""
        layout = _SHDR[self._class]
        expected = _SHDR_SIZE[self._class]
        count, names_index = self._shnum, self._shstrndx
        zero = self._section_zero()
        if count == 0 and zero is not None:
            count = zero[5]  # sh_size of section 0 holds the real count
        if names_index == SHN_XINDEX and zero is not None:
            names_index = zero[6]
        if count == 0:
            return [], b""
        if self.shentsize != expected:
            self.fail(46 if self._class == ELFCLASS32 else 58,
                      f"expected e_shentsize {expected}, found {self.shentsize}")  # fmt: skip
        table = self.reader.raw(self.shoff, count * expected, f"{count} section headers")
        # One unpack over the whole table: a module has ~40 sections, and the
        # module index reads thousands of modules.
        rows = list(struct.iter_unpack(self._order + layout, table))
        if not 0 <= names_index < count:
            self.fail(self.shoff, f"section name table index {names_index} is not a section")
        names = rows[names_index]
        return rows, self.reader.raw(names[4], names[5], "section name table")

    def _section(self, index: int, row: tuple[int, ...], names: bytes) -> Section:
        name_offset, kind, flags, addr, offset, size, link, info, align, entsize = row
        at = self.shoff + index * _SHDR_SIZE[self._class]
        name = _string_at(names, name_offset, self.reader, at, "section name")
        return Section(index, name, kind, flags, addr, offset, size, link, info, align, entsize, at)

    @cached_property
    def sections(self) -> tuple[Section, ...]:
        """Every section header with its name, in file order (empty when stripped)."""
        rows, names = self._section_table
        return tuple(self._section(index, row, names) for index, row in enumerate(rows))

    def section(self, name: str) -> Section | None:
        """The first section called `name`, or None.

        Only that section's header is decoded: its name is looked up in the
        name table first, and only headers pointing there are compared.
        """
        if "sections" in self.__dict__:
            return next((section for section in self.sections if section.name == name), None)
        rows, names = self._section_table
        wanted = name.encode() + b"\0"
        starts = set()
        start = names.find(wanted)
        while start >= 0:
            starts.add(start)
            start = names.find(wanted, start + 1)
        for index, row in enumerate(rows):
            if row[0] in starts:
                return self._section(index, row, names)
        return None

    def section_data(self, section: Section) -> bytes:
        """A section's file bytes (nothing for SHT_NOBITS, which occupies no file space)."""
        if section.type == SHT_NOBITS:
            return b""
        return self.reader.raw(section.offset, section.size, f"contents of section "
                               f"{shown(section.name) or section.index}")  # fmt: skip

    def _linked(self, section: Section, what: str) -> Section:
        if not 0 <= section.link < len(self.sections):
            self.fail(section.at, f"{shown(section.name)}: sh_link {section.link} is not a {what}")
        return self.sections[section.link]

    def symbols(self, section: Section) -> tuple[Symbol, ...]:
        """The entries of a symbol table section (SHT_SYMTAB or SHT_DYNSYM)."""
        layout = _SYM[self._class]
        size = struct.calcsize("<" + layout)
        data = self.section_data(section)
        names = self.section_data(self._linked(section, "string table"))
        symbols = []
        for index in range(len(data) // size):
            at = section.offset + index * size
            fields = self._unpack(layout, at, "symbol")
            if self._class == ELFCLASS64:
                name_offset, info, _other, shndx, value, length = fields
            else:
                name_offset, value, length, info, _other, shndx = fields
            name = _string_at(names, name_offset, self.reader, at, "symbol name")
            symbols.append(Symbol(index, name, value, length, info >> 4, info & 0xF, shndx))
        return tuple(symbols)

    def relocations(self, section: Section) -> tuple[Relocation, ...]:
        """The entries of a SHT_RELA or SHT_REL section."""
        rela = section.type == SHT_RELA
        layout = (_RELA if rela else _REL)[self._class]
        size = struct.calcsize("<" + layout)
        count = section.size // size
        self.reader.need(section.offset, count * size, f"relocations of {shown(section.name)}")
        entries = []
        for index in range(count):
            fields = self._unpack(layout, section.offset + index * size, "relocation")
            offset, info = fields[0], fields[1]
            addend = fields[2] if rela else 0
            if self._class == ELFCLASS64:
                symbol, kind = info >> 32, info & 0xFFFFFFFF
            else:
                symbol, kind = info >> 8, info & 0xFF
            entries.append(Relocation(offset, symbol, kind, addend))
        return tuple(entries)

    # ------------------------------------------------------------------ dynamic linking

    def dynamic(self) -> DynamicInfo:
        """DT_NEEDED, DT_RUNPATH and DT_RPATH, read as the dynamic loader does (PT_DYNAMIC).

        A file without PT_DYNAMIC (static, or not a program) needs nothing.
        """
        found = self.segments(PT_DYNAMIC)
        if not found:
            return DynamicInfo((), (), ())
        table = self.segment_data(found[0])
        layout = self._order + _DYN[self._class]
        size = struct.calcsize(layout)
        entries: list[tuple[int, int]] = []
        for start in range(0, len(table) - size + 1, size):
            tag, value = struct.unpack_from(layout, table, start)
            if tag == DT_NULL:
                break
            entries.append((tag, value))
        strtab = [value for tag, value in entries if tag == DT_STRTAB]
        if not strtab:
            self.fail(found[0].offset, "dynamic section has no DT_STRTAB")
        strings = self._file_offset(strtab[0], "DT_STRTAB")

        def text(value: int, what: str) -> str:
            return _string_at(self.data, strings + value, self.reader, found[0].offset, what)

        needed = tuple(text(value, "DT_NEEDED") for tag, value in entries if tag == DT_NEEDED)
        runpath = tuple(part for tag, value in entries if tag == DT_RUNPATH
                        for part in text(value, "DT_RUNPATH").split(":"))  # fmt: skip
        rpath = tuple(part for tag, value in entries if tag == DT_RPATH
                      for part in text(value, "DT_RPATH").split(":"))  # fmt: skip
        return DynamicInfo(needed, runpath, rpath)

    def _file_offset(self, address: int, what: str) -> int:
        """The file offset of virtual `address`, through the PT_LOAD that maps it."""
        for header in self.segments(PT_LOAD):
            if header.vaddr <= address < header.vaddr + header.filesz:
                return header.offset + address - header.vaddr
        self.fail(self.phoff, f"{what} address {address:#x} is in no PT_LOAD")


def _string_at(table: bytes, offset: int, reader: ByteReader, at: int, what: str) -> str:
    """The NUL-terminated string at `offset` of a string table."""
    if not 0 <= offset <= len(table):
        reader.fail(at, f"{what} offset {offset:#x} is outside its string table")
    end = table.find(b"\0", offset)
    if end < 0:
        reader.fail(at, f"{what} at {offset:#x} has no terminating NUL")
    return table[offset:end].decode("utf-8", "replace")


def _tiny_elf(sections: dict[str, bytes] | None = None) -> bytes:
    """A minimal x86_64 ELF64 executable header, for examples; with `sections`, their
    SHT_PROGBITS contents follow, then a name table and the section headers.

    >>> elf = ElfFile(_tiny_elf({".modinfo": b"license=GPL\\0"}), "tiny.ko")
    >>> [section.name for section in elf.sections]
    ['', '.modinfo', '.shstrtab']
    """
    ident = ELF_MAGIC + bytes([ELFCLASS64, ELFDATA2LSB, 1]) + bytes(9)
    if not sections:
        header = struct.pack("<HHIQQQIHHHHHH", ET_EXEC, 62, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0)
        return ident + header
    names = b"\0" + b"".join(name.encode() + b"\0" for name in sections) + b".shstrtab\0"
    body = b"".join(sections.values()) + names
    rows = [bytes(SHDR64_SIZE)]
    offset, name_at = EHDR64_SIZE, 1
    for name, data in sections.items():
        rows.append(struct.pack("<IIQQQQIIQQ", name_at, SHT_PROGBITS, 0, 0, offset, len(data),
                                0, 0, 1, 0))  # fmt: skip
        offset, name_at = offset + len(data), name_at + len(name) + 1
    rows.append(struct.pack("<IIQQQQIIQQ", name_at, SHT_STRTAB, 0, 0, offset, len(names),
                            0, 0, 1, 0))  # fmt: skip
    shoff = EHDR64_SIZE + len(body)
    header = struct.pack("<HHIQQQIHHHHHH", ET_EXEC, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64,
                         len(rows), len(rows) - 1)  # fmt: skip
    return ident + header + body + b"".join(rows)
