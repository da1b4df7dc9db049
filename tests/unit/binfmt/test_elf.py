"""The one ELF reader, checked against two independent ones: pyelftools and binutils' readelf.

The files are the real ones of the default recipe's packages (programs,
libraries, a spread of kernel modules) and the shipped purgatory object;
damaged copies of them must fail with the caller's error type only.
"""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from elftools.elf import enums
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.binfmt.elf import (
    ELF_MAGIC,
    SHT_DYNSYM,
    SHT_REL,
    SHT_RELA,
    SHT_SYMTAB,
    ElfFile,
    _tiny_elf,
)
from builder.errors import KdumpBuildError
from builder.image.packages import PackageRoot
from builder.kexec.purgatory.x86_64 import PURGATORY

SHT_RELR = 19
# Every 25th module: about 160 of the ~4000, from every corner of the tree.
MODULE_STRIDE = 25


class OracleError(KdumpBuildError):
    """The error type these tests hand the reader: nothing else may escape it."""


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes


@pytest.fixture(scope="module")
def samples(default_root: PackageRoot) -> list[Sample]:
    """Every ELF program and library of the packages, a spread of modules, the purgatory."""
    found: list[Sample] = [Sample("purgatory-x86_64.o", PURGATORY.shipped_object())]
    modules = 0
    for path in sorted(default_root.walk_files("/")):
        if "/lib/modules/" in path:
            if not path.endswith(".ko"):
                continue
            modules += 1
            if modules % MODULE_STRIDE:
                continue
        data = default_root.read_bytes(path, keep=False)
        if data.startswith(ELF_MAGIC):
            found.append(Sample(path, data))
    assert modules > 1000 and len(found) > 300
    return found


# ------------------------------------------------------------------ pyelftools


def _number(value: Any, *tables: Mapping[str, int]) -> int:
    """pyelftools decodes known enum values into names; back to the number."""
    if isinstance(value, int):
        return value
    for table in tables:
        if value in table:
            return table[value]
    raise AssertionError(f"unknown enum name {value}")


def _compare_with_pyelftools(sample: Sample) -> None:
    ours = ElfFile(sample.data, sample.name, OracleError)
    theirs = ELFFile(io.BytesIO(sample.data))
    header = theirs.header
    assert (ours.elf_class, ours.big_endian) == (theirs.elfclass, not theirs.little_endian)
    assert ours.type == _number(header["e_type"], enums.ENUM_E_TYPE)
    assert ours.machine == _number(header["e_machine"], enums.ENUM_E_MACHINE)
    assert (ours.entry, ours.phoff, ours.shoff) == (
        header["e_entry"],
        header["e_phoff"],
        header["e_shoff"],
    )
    _compare_segments(ours, theirs)
    _compare_sections(ours, theirs)
    _compare_dynamic(ours, theirs)


def _compare_segments(ours: ElfFile, theirs: ELFFile) -> None:
    segments = list(theirs.iter_segments())
    assert len(ours.program_headers) == len(segments)
    for mine, segment in zip(ours.program_headers, segments, strict=True):
        expected = (
            _number(segment["p_type"], enums.ENUM_P_TYPE_BASE),
            segment["p_flags"],
            segment["p_offset"],
            segment["p_vaddr"],
            segment["p_paddr"],
            segment["p_filesz"],
            segment["p_memsz"],
            segment["p_align"],
        )
        assert (mine.type, mine.flags, mine.offset, mine.vaddr, mine.paddr, mine.filesz,
                mine.memsz, mine.align) == expected  # fmt: skip
    interpreters = [s.get_interp_name() for s in segments if isinstance(s, InterpSegment)]
    assert ours.interpreter() == (interpreters[0] if interpreters else "")


def _compare_sections(ours: ElfFile, theirs: ELFFile) -> None:
    sections = list(theirs.iter_sections())
    assert [section.name for section in ours.sections] == [s.name for s in sections]
    for mine, section in zip(ours.sections, sections, strict=True):
        expected = (
            _number(section["sh_type"], enums.ENUM_SH_TYPE_AMD64, enums.ENUM_SH_TYPE_BASE),
            section["sh_flags"],
            section["sh_addr"],
            section["sh_offset"],
            section["sh_size"],
            section["sh_link"],
            section["sh_info"],
            section["sh_addralign"],
            section["sh_entsize"],
        )
        assert (mine.type, mine.flags, mine.addr, mine.offset, mine.size, mine.link, mine.info,
                mine.addralign, mine.entsize) == expected, mine.name  # fmt: skip
        assert ours.section(mine.name) == next(s for s in ours.sections if s.name == mine.name)
        if mine.type in (SHT_SYMTAB, SHT_DYNSYM):
            _compare_symbols(ours, mine.index, section)
        elif mine.type in (SHT_RELA, SHT_REL):
            _compare_relocations(ours, mine.index, section)
    assert ours.section(".no-such-section") is None


def _compare_symbols(ours: ElfFile, index: int, section: Any) -> None:
    mine = ours.symbols(ours.sections[index])
    theirs = list(section.iter_symbols())
    assert len(mine) == len(theirs)
    for symbol, other in zip(mine, theirs, strict=True):
        assert (symbol.name, symbol.value, symbol.size) == (
            other.name,
            other["st_value"],
            other["st_size"],
        )
        assert symbol.bind == _number(other["st_info"]["bind"], enums.ENUM_ST_INFO_BIND)
        assert symbol.type == _number(other["st_info"]["type"], enums.ENUM_ST_INFO_TYPE)
        assert symbol.shndx == _number(other["st_shndx"], enums.ENUM_ST_SHNDX)


def _compare_relocations(ours: ElfFile, index: int, section: Any) -> None:
    mine = ours.relocations(ours.sections[index])
    theirs = list(section.iter_relocations())
    assert len(mine) == len(theirs)
    for relocation, other in zip(mine, theirs, strict=True):
        addend = other["r_addend"] if other.is_RELA() else 0
        assert (relocation.offset, relocation.symbol, relocation.type, relocation.addend) == (
            other["r_offset"],
            other["r_info_sym"],
            other["r_info_type"],
            addend,
        )


def _compare_dynamic(ours: ElfFile, theirs: ELFFile) -> None:
    needed: list[str] = []
    runpath: list[str] = []
    rpath: list[str] = []
    for section in theirs.iter_sections():
        if not isinstance(section, DynamicSection) or section["sh_type"] != "SHT_DYNAMIC":
            continue
        for tag in section.iter_tags():
            # pyelftools resolves a string tag's value into an attribute named after it.
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(getattr(tag, "needed"))  # noqa: B009
            elif tag.entry.d_tag == "DT_RUNPATH":
                runpath += getattr(tag, "runpath").split(":")  # noqa: B009
            elif tag.entry.d_tag == "DT_RPATH":
                rpath += getattr(tag, "rpath").split(":")  # noqa: B009
    dynamic = ours.dynamic()
    assert (list(dynamic.needed), list(dynamic.runpath), list(dynamic.rpath)) == (
        needed,
        runpath,
        rpath,
    )


def _each(samples: list[Sample], compare: Callable[[Sample], None]) -> None:
    """Run `compare` on every sample; a failure names the file."""
    for sample in samples:
        try:
            compare(sample)
        except AssertionError as problem:
            raise AssertionError(f"{sample.name}: {problem}") from None


def test_equal_to_pyelftools(samples: list[Sample]) -> None:
    _each(samples, _compare_with_pyelftools)


# ------------------------------------------------------------------ readelf


def _readelf(data: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".elf") as file:
        file.write(data)
        file.flush()
        return subprocess.run(
            ["readelf", "-h", "-l", "-S", "-d", "-s", "-r", "-W", file.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout


def _field(text: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}:\s+(.+)$", text, re.MULTILINE)
    assert match, label
    return match.group(1).strip()


def _readelf_sections(text: str) -> list[tuple[str, int, int, int]]:
    """(name, address, offset, size) of sections 1.. (section 0 has no name to anchor on)."""
    return [
        (m.group(1), int(m.group(3), 16), int(m.group(4), 16), int(m.group(5), 16))
        for m in re.finditer(
            r"^\s*\[\s*[1-9]\d*\]\s(\S+)\s+(\S+)\s+([0-9a-f]+)\s([0-9a-f]+)\s([0-9a-f]+)\s",
            text,
            re.MULTILINE,
        )
    ]


def _readelf_segments(text: str) -> list[tuple[int, int, int, int, int]]:
    return [
        tuple(int(value, 16) for value in m.groups())  # type: ignore[misc]
        for m in re.finditer(
            r"^\s+\S+\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) ",
            text,
            re.MULTILINE,
        )
    ]


def _compare_with_readelf(sample: Sample) -> None:
    ours = ElfFile(sample.data, sample.name, OracleError)
    text = _readelf(sample.data)
    assert _field(text, "Type").split()[0] == ours.type_name.removeprefix("ET_")
    assert int(_field(text, "Entry point address"), 16) == ours.entry
    assert int(_field(text, "Number of program headers")) == len(ours.program_headers)
    assert int(_field(text, "Number of section headers")) == len(ours.sections)
    if ours.machine == 62:
        assert "X86-64" in _field(text, "Machine")
    assert _readelf_sections(text) == [
        (section.name, section.addr, section.offset, section.size) for section in ours.sections[1:]
    ]
    assert _readelf_segments(text) == [
        (header.offset, header.vaddr, header.paddr, header.filesz, header.memsz)
        for header in ours.program_headers
    ]
    interpreter = re.search(r"\[Requesting program interpreter: (.+)\]", text)
    assert ours.interpreter() == (interpreter.group(1) if interpreter else "")
    dynamic = ours.dynamic()
    assert re.findall(r"\(NEEDED\)\s+Shared library: \[(.+)\]", text) == list(dynamic.needed)
    runpath = re.findall(r"\(RUNPATH\)\s+Library runpath: \[(.+)\]", text)
    assert [part for entry in runpath for part in entry.split(":")] == list(dynamic.runpath)
    _compare_table_sizes(ours, text)


def _compare_table_sizes(ours: ElfFile, text: str) -> None:
    """Entries per symbol and relocation table, as readelf counts them."""
    counts = {
        name: int(count)
        for name, count in re.findall(
            r"(?:Symbol table|Relocation section) '([^']+)' (?:at offset 0x[0-9a-f]+ )?"
            r"contains (\d+) entr",
            text,
        )
    }
    for section in ours.sections:
        if section.type in (SHT_SYMTAB, SHT_DYNSYM):
            assert counts.pop(section.name) == len(ours.symbols(section)), section.name
        elif section.type in (SHT_RELA, SHT_REL):
            assert counts.pop(section.name) == len(ours.relocations(section)), section.name
        elif section.type == SHT_RELR:
            counts.pop(section.name)  # packed relative relocations: no caller reads them
    assert not counts


def test_equal_to_readelf(samples: list[Sample]) -> None:
    _each(samples, _compare_with_readelf)


# ------------------------------------------------------------------ damaged input


def _read_everything(data: bytes) -> None:
    """Every accessor the callers use; only OracleError may come out."""
    elf = ElfFile(data, "damaged", OracleError)
    assert elf.program_headers_end >= 0
    for header in elf.program_headers:
        elf.segment_data(header)
    elf.interpreter()
    elf.dynamic()
    elf.section(".modinfo")
    for section in elf.sections:
        elf.section_data(section)
        if section.type in (SHT_SYMTAB, SHT_DYNSYM):
            elf.symbols(section)
        elif section.type in (SHT_RELA, SHT_REL):
            elf.relocations(section)


def _damage_seeds() -> Iterator[bytes]:
    yield _tiny_elf()
    yield PURGATORY.shipped_object()
    for name in ("true", "ls"):
        path = Path("/usr/bin") / name
        if path.exists():
            yield path.read_bytes()


SEEDS = list(_damage_seeds())


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data)))])
    # Flips where the headers and tables are: the first KiB, or the section headers at the end.
    near_end = draw(st.booleans())
    for _ in range(draw(st.integers(1, 8))):
        span = min(len(data), 1024)
        at = draw(st.integers(0, span - 1))
        if near_end:
            at = len(data) - 1 - at
        data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=damaged())
def test_damaged_input_raises_only_the_given_error(data: bytes) -> None:
    try:
        _read_everything(data)
    except OracleError as error:
        message = str(error)
        assert message.startswith("damaged: ") and "\n" not in message
        assert "byte 0x" in message


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_every_truncation_of_the_headers(seed: int) -> None:
    data = SEEDS[seed]
    for cut in range(0, min(len(data), 256)):
        with pytest.raises(OracleError):
            _read_everything(data[:cut])
