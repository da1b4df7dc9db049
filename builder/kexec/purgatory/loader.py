"""Lay out a relocatable (ET_REL) purgatory object at a load address.

The purgatory ships as a relocatable object so it can run wherever the layout
puts it. This module does what a linker would: place the SHF_ALLOC sections
in one buffer (.bss last, as zeros beyond the buffer), resolve symbols, apply
the relocations for the final address, and patch data symbols with checks.
It is pure: bytes in, an immutable `LoadedPurgatory` out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from builder.binfmt.elf import (
    ET_REL,
    SHF_ALLOC,
    SHN_ABS,
    SHN_COMMON,
    SHN_LORESERVE,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_REL,
    SHT_RELA,
    STB_GLOBAL,
    STB_WEAK,
    ElfFile,
    Section,
    Symbol,
)
from builder.errors import LayoutError
from builder.units import align_up

__all__ = [
    "LoadedPurgatory",
    "PurgatorySymbol",
    "RelocationRule",
    "RelocationTable",
    "load_purgatory",
]

_ADDRESS_LIMIT = 1 << 64


@dataclass(frozen=True)
class RelocationRule:
    """How one relocation type computes and stores its value."""

    name: str
    width: int  # bytes written at the place
    pc_relative: bool  # value is S + A - P rather than S + A
    signed: bool | None  # range check: True signed, False unsigned, None wraps (64-bit)


@dataclass(frozen=True)
class RelocationTable:
    """The relocation types an architecture's purgatory needs, by r_type.

    `machine` is the e_machine the table is for; a rule of None is a type
    that does nothing (R_*_NONE). The tables live in the per-architecture
    modules (x86_64.py).
    """

    machine: int
    rules: Mapping[int, RelocationRule | None]


@dataclass(frozen=True)
class PurgatorySymbol:
    """A global symbol of the loaded purgatory."""

    name: str
    address: int
    size: int
    section: str
    in_buffer: bool  # False for .bss (NOBITS) and absolute symbols: not patchable


@dataclass(frozen=True)
class LoadedPurgatory:
    """The purgatory relocated for `load_address`, ready to be a segment.

    `buffer` holds the bytes to copy (bufsz); `memsz` also covers .bss, which
    the kernel zero-fills. Patching returns a new object; nothing mutates.
    """

    load_address: int
    buffer: bytes
    memsz: int
    alignment: int
    entry: int
    symbols: Mapping[str, PurgatorySymbol]

    @property
    def bufsz(self) -> int:
        """Bytes in `buffer` (the rest of `memsz` is zeros)."""
        return len(self.buffer)

    def symbol(self, name: str) -> tuple[int, int]:
        """Address and size of global symbol `name`.

        >>> from builder.kexec.purgatory.x86_64 import load_x86_64_purgatory
        >>> purgatory = load_x86_64_purgatory(0x7F000000)
        >>> address, size = purgatory.symbol("purgatory_sha256_digest")
        >>> purgatory.load_address <= address < purgatory.load_address + purgatory.bufsz, size
        (True, 32)
        """
        found = self._lookup(name)
        return found.address, found.size

    def read(self, name: str) -> bytes:
        """The current bytes of patchable symbol `name`.

        >>> from builder.kexec.purgatory.x86_64 import load_x86_64_purgatory
        >>> load_x86_64_purgatory(0x7F000000).read("purgatory_backup") == bytes(24)  # unpatched
        True
        """
        found = self._patchable(name)
        offset = found.address - self.load_address
        return self.buffer[offset : offset + found.size]

    def patch(self, name: str, value: bytes) -> LoadedPurgatory:
        """A copy with the bytes of data symbol `name` replaced by `value`.

        `value` must be exactly the symbol's size, and the symbol must be in
        the buffer (not .bss, whose bytes the kernel zero-fills).

        >>> from builder.kexec.purgatory.x86_64 import load_x86_64_purgatory
        >>> purgatory = load_x86_64_purgatory(0x7F000000)
        >>> patched = purgatory.patch("purgatory_sha256_digest", b"\\x5a" * 32)
        >>> patched.read("purgatory_sha256_digest") == b"Z" * 32, purgatory is not patched
        (True, True)
        """
        found = self._patchable(name)
        if len(value) != found.size:
            raise LayoutError(
                f"purgatory: symbol {name!r} is {found.size} bytes, patch value is {len(value)}"
            )
        offset = found.address - self.load_address
        buffer = self.buffer[:offset] + bytes(value) + self.buffer[offset + found.size :]
        return replace(self, buffer=buffer)

    def _lookup(self, name: str) -> PurgatorySymbol:
        found = self.symbols.get(name)
        if found is None:
            raise LayoutError(f"purgatory: no global symbol {name!r}")
        return found

    def _patchable(self, name: str) -> PurgatorySymbol:
        found = self._lookup(name)
        if not found.in_buffer:
            raise LayoutError(
                f"purgatory: symbol {name!r} is in {found.section} (not in the buffer), "
                "cannot be patched"
            )
        return found


def load_purgatory(
    obj: bytes,
    load_address: int,
    *,
    relocations: RelocationTable,
    entry_symbol: str = "purgatory_start",
) -> LoadedPurgatory:
    """Relocate the ET_REL object `obj` to run at `load_address`.

    Raises `LayoutError` for anything the purgatory cannot be: not ET_REL, an
    architecture other than the table's, an unknown relocation type, an
    undefined symbol, a 32-bit relocation that does not fit, a misaligned
    load address.

    >>> from builder.kexec.purgatory import x86_64
    >>> purgatory = load_purgatory(
    ...     x86_64.shipped_object(), 0x7F000000, relocations=x86_64.RELOCATIONS)
    >>> purgatory.entry == purgatory.symbol("purgatory_start")[0]
    True
    """
    elf = _open(obj)
    if elf.machine != relocations.machine:
        raise LayoutError(
            f"purgatory: the object is for e_machine {elf.machine}, "
            f"the relocation table for {relocations.machine}"
        )
    section_addresses, buffer, memsz, alignment = _place_sections(elf, load_address)
    symbols = _global_symbols(elf, section_addresses)
    _apply_relocations(elf, relocations, section_addresses, buffer, load_address)
    if entry_symbol not in symbols:
        raise LayoutError(f"purgatory: entry symbol {entry_symbol!r} is not defined")
    return LoadedPurgatory(
        load_address=load_address,
        buffer=bytes(buffer),
        memsz=memsz,
        alignment=alignment,
        entry=symbols[entry_symbol].address,
        symbols=MappingProxyType(symbols),
    )


def _open(obj: bytes) -> ElfFile:
    elf = ElfFile(obj, "purgatory", LayoutError)
    if elf.type != ET_REL:
        raise LayoutError(f"purgatory: expected a relocatable object (ET_REL), got {elf.type_name}")
    if elf.elf_class != 64 or elf.big_endian:
        raise LayoutError("purgatory: expected a 64-bit little-endian object")
    return elf


def _place_sections(elf: ElfFile, load_address: int) -> tuple[dict[int, int], bytearray, int, int]:
    """Assign addresses: bytes-bearing sections first in file order, NOBITS after."""
    allocated = [section for section in elf.sections if section.flags & SHF_ALLOC]
    with_bytes = [section for section in allocated if section.type != SHT_NOBITS]
    zero_filled = [section for section in allocated if section.type == SHT_NOBITS]
    alignment = max([section.addralign for section in allocated] + [1])
    if not 0 <= load_address < _ADDRESS_LIMIT:
        raise LayoutError(f"purgatory: load address {load_address:#x} is not a 64-bit address")
    if load_address % alignment:
        raise LayoutError(
            f"purgatory: load address {load_address:#x} is not aligned to {alignment:#x}"
        )

    addresses: dict[int, int] = {}
    buffer = bytearray()
    for section in with_bytes:
        buffer.extend(bytes(align_up(len(buffer), section.addralign) - len(buffer)))
        addresses[section.index] = load_address + len(buffer)
        buffer.extend(elf.section_data(section))
    end = len(buffer)
    for section in zero_filled:
        end = align_up(end, section.addralign)
        addresses[section.index] = load_address + end
        end += section.size
    if load_address + end > _ADDRESS_LIMIT:
        raise LayoutError(f"purgatory: {end:#x} bytes at {load_address:#x} pass the 64-bit limit")
    return addresses, buffer, end, alignment


def _global_symbols(elf: ElfFile, section_addresses: dict[int, int]) -> dict[str, PurgatorySymbol]:
    """Global and weak symbols by name; local names may repeat across files."""
    symtab = elf.section(".symtab")
    if symtab is None:
        raise LayoutError("purgatory: object has no symbol table")
    symbols: dict[str, PurgatorySymbol] = {}
    for symbol in elf.symbols(symtab):
        if symbol.bind not in (STB_GLOBAL, STB_WEAK) or not symbol.name:
            continue
        address = _symbol_address(symbol, section_addresses)
        if symbol.shndx == SHN_ABS:
            section, in_buffer = "*ABS*", False
        else:
            home = elf.sections[symbol.shndx]
            section, in_buffer = home.name, home.type != SHT_NOBITS
        symbols[symbol.name] = PurgatorySymbol(
            symbol.name, address, symbol.size, section, in_buffer
        )
    return symbols


def _symbol_address(symbol: Symbol, section_addresses: dict[int, int]) -> int:
    name = symbol.name or "(unnamed)"
    if symbol.shndx == SHN_UNDEF:
        raise LayoutError(f"purgatory: undefined symbol {name!r}")
    if symbol.shndx == SHN_COMMON:
        raise LayoutError(f"purgatory: common symbol {name!r} (build with -fno-common)")
    if symbol.shndx == SHN_ABS:
        return symbol.value
    if symbol.shndx not in section_addresses:
        raise LayoutError(f"purgatory: symbol {name!r} is in a section that is not loaded")
    return section_addresses[symbol.shndx] + symbol.value


@dataclass(frozen=True)
class _Target:
    """A loaded section that relocations patch, and the symbols they refer to."""

    section: Section
    address: int
    symbols: tuple[Symbol, ...]


def _relocation_sections(
    elf: ElfFile, section_addresses: dict[int, int]
) -> Iterator[tuple[Section, _Target]]:
    """Each RELA section that patches a loaded section, with what it patches."""
    symbol_tables: dict[int, tuple[Symbol, ...]] = {}
    for section in elf.sections:
        if section.type not in (SHT_RELA, SHT_REL):
            continue
        if section.info not in section_addresses:
            continue  # relocations for non-loaded sections (debug info, notes)
        if section.type == SHT_REL:
            raise LayoutError(
                f"purgatory: {section.name}: REL relocations are not supported, only RELA"
            )
        target = elf.sections[section.info]
        if target.type == SHT_NOBITS:
            raise LayoutError(f"purgatory: {section.name}: relocations against .bss")
        if not 0 < section.link < len(elf.sections):
            raise LayoutError(f"purgatory: {section.name}: sh_link {section.link} is no symtab")
        if section.link not in symbol_tables:
            symbol_tables[section.link] = elf.symbols(elf.sections[section.link])
        symbols = symbol_tables[section.link]
        yield section, _Target(target, section_addresses[target.index], symbols)


def _apply_relocations(
    elf: ElfFile,
    relocations: RelocationTable,
    section_addresses: dict[int, int],
    buffer: bytearray,
    load_address: int,
) -> None:
    for reloc_section, target in _relocation_sections(elf, section_addresses):
        for relocation in elf.relocations(reloc_section):
            where = f"{target.section.name}+{relocation.offset:#x}"
            if relocation.symbol >= len(target.symbols):
                raise LayoutError(
                    f"purgatory: relocation at {where} names symbol {relocation.symbol}, "
                    f"past the {len(target.symbols)} of its table"
                )
            symbol = target.symbols[relocation.symbol]
            label = _symbol_label(elf, symbol) if relocation.symbol else "(absolute)"
            if relocation.type not in relocations.rules:
                raise LayoutError(
                    f"purgatory: unsupported relocation type {relocation.type} at {where} "
                    f"against {label!r}"
                )
            rule = relocations.rules[relocation.type]
            if rule is None:
                continue
            if relocation.offset + rule.width > target.section.size:
                raise LayoutError(f"purgatory: {rule.name} at {where} runs past the section")
            place = target.address + relocation.offset
            # Symbol index 0 (the null symbol) stands for the value 0: the addend is absolute.
            base = _symbol_address(symbol, section_addresses) if relocation.symbol else 0
            value = base + relocation.addend
            if rule.pc_relative:
                value -= place
            start = place - load_address
            buffer[start : start + rule.width] = _encode(rule, value, where, label)


def _symbol_label(elf: ElfFile, symbol: Symbol) -> str:
    if symbol.name:
        return symbol.name
    if 0 < symbol.shndx < min(SHN_LORESERVE, len(elf.sections)):
        return elf.sections[symbol.shndx].name
    return "(unnamed)"


def _encode(rule: RelocationRule, value: int, where: str, label: str) -> bytes:
    bits = rule.width * 8
    if rule.signed is None:
        return (value % (1 << bits)).to_bytes(rule.width, "little")
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if rule.signed else (0, 1 << bits)
    if not low <= value < high:
        kind = "signed" if rule.signed else "unsigned"
        raise LayoutError(
            f"purgatory: relocation {rule.name} at {where} against {label!r} overflows: "
            f"{value:#x} does not fit {bits} bits {kind}"
        )
    return value.to_bytes(rule.width, "little", signed=rule.signed)
