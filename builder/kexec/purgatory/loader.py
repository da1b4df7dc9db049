"""Lay out a relocatable (ET_REL) purgatory object at a load address.

The purgatory ships as a relocatable object so it can run wherever the layout
puts it. This module does what a linker would: place the SHF_ALLOC sections
in one buffer (.bss last, as zeros beyond the buffer), resolve symbols, apply
the relocations for the final address, and patch data symbols with checks.
It is pure: bytes in, an immutable `LoadedPurgatory` out.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from builder.errors import LayoutError
from builder.units import align_up

__all__ = ["LoadedPurgatory", "PurgatorySymbol", "load_purgatory"]

_SHN_UNDEF = "SHN_UNDEF"
_SHN_ABS = "SHN_ABS"
_SHN_COMMON = "SHN_COMMON"
_ADDRESS_LIMIT = 1 << 64


@dataclass(frozen=True)
class _Relocation:
    """How one relocation type computes and stores its value."""

    name: str
    width: int  # bytes written at the place
    pc_relative: bool  # value is S + A - P rather than S + A
    signed: bool | None  # range check: True signed, False unsigned, None wraps (64-bit)


# Per architecture (keyed by e_machine): the relocation types the purgatory
# needs. PLT32 is PC32 here: there is no PLT, every callee is in the buffer.
_RELOCATIONS: dict[str, dict[int, _Relocation | None]] = {
    "EM_X86_64": {
        0: None,  # R_X86_64_NONE
        1: _Relocation("R_X86_64_64", 8, pc_relative=False, signed=None),
        2: _Relocation("R_X86_64_PC32", 4, pc_relative=True, signed=True),
        4: _Relocation("R_X86_64_PLT32", 4, pc_relative=True, signed=True),
        10: _Relocation("R_X86_64_32", 4, pc_relative=False, signed=False),
        11: _Relocation("R_X86_64_32S", 4, pc_relative=False, signed=True),
        24: _Relocation("R_X86_64_PC64", 8, pc_relative=True, signed=None),
    },
}


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

        >>> from builder.kexec.purgatory import x86_64
        >>> purgatory = load_purgatory(x86_64.shipped_object(), 0x7F000000)
        >>> address, size = purgatory.symbol("purgatory_sha256_digest")
        >>> 0x7F000000 <= address < 0x7F000000 + purgatory.memsz, size
        (True, 32)
        """
        found = self._lookup(name)
        return found.address, found.size

    def read(self, name: str) -> bytes:
        """The current bytes of patchable symbol `name`.

        >>> from builder.kexec.purgatory import x86_64
        >>> purgatory = load_purgatory(x86_64.shipped_object(), 0x7F000000)
        >>> purgatory.read("purgatory_backup") == bytes(24)  # src, dst, size: copy nothing
        True
        """
        found = self._patchable(name)
        offset = found.address - self.load_address
        return self.buffer[offset : offset + found.size]

    def patch(self, name: str, value: bytes) -> LoadedPurgatory:
        """A copy with the bytes of data symbol `name` replaced by `value`.

        `value` must be exactly the symbol's size, and the symbol must be in
        the buffer (not .bss, whose bytes the kernel zero-fills).

        >>> from builder.kexec.purgatory import x86_64
        >>> purgatory = load_purgatory(x86_64.shipped_object(), 0x7F000000)
        >>> patched = purgatory.patch("purgatory_sha256_digest", b"\\xab" * 32)
        >>> patched.read("purgatory_sha256_digest") == b"\\xab" * 32 != purgatory.read(
        ...     "purgatory_sha256_digest")
        True
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
    obj: bytes, load_address: int, *, entry_symbol: str = "purgatory_start"
) -> LoadedPurgatory:
    """Relocate the ET_REL object `obj` to run at `load_address`.

    Raises `LayoutError` for anything the purgatory cannot be: not ET_REL, an
    unknown architecture or relocation type, an undefined symbol, a 32-bit
    relocation that does not fit, a misaligned load address.

    >>> from builder.kexec.purgatory import x86_64
    >>> purgatory = load_purgatory(x86_64.shipped_object(), 0x7F000000)
    >>> purgatory.entry == purgatory.symbol("purgatory_start")[0]
    True
    """
    elf = _open(obj)
    machine = elf["e_machine"]
    relocations = _RELOCATIONS.get(machine)
    if relocations is None:
        raise LayoutError(f"purgatory: unsupported architecture {machine}")

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


def _open(obj: bytes) -> Any:
    try:
        elf = ELFFile(io.BytesIO(obj))
    except ELFError as error:
        raise LayoutError(f"purgatory: not an ELF object: {error}") from None
    if elf["e_type"] != "ET_REL":
        raise LayoutError(f"purgatory: expected a relocatable object (ET_REL), got {elf['e_type']}")
    if elf.elfclass != 64 or not elf.little_endian:
        raise LayoutError("purgatory: expected a 64-bit little-endian object")
    return elf


def _place_sections(elf: Any, load_address: int) -> tuple[dict[int, int], bytearray, int, int]:
    """Assign addresses: bytes-bearing sections first in file order, NOBITS after."""
    allocated = [
        (index, section)
        for index, section in enumerate(elf.iter_sections())
        if section["sh_flags"] & SH_FLAGS.SHF_ALLOC
    ]
    with_bytes = [(i, s) for i, s in allocated if s["sh_type"] != "SHT_NOBITS"]
    zero_filled = [(i, s) for i, s in allocated if s["sh_type"] == "SHT_NOBITS"]
    alignment = max([s["sh_addralign"] for _, s in allocated] + [1])
    if not 0 <= load_address < _ADDRESS_LIMIT:
        raise LayoutError(f"purgatory: load address {load_address:#x} is not a 64-bit address")
    if load_address % alignment:
        raise LayoutError(
            f"purgatory: load address {load_address:#x} is not aligned to {alignment:#x}"
        )

    addresses: dict[int, int] = {}
    buffer = bytearray()
    for index, section in with_bytes:
        buffer.extend(bytes(align_up(len(buffer), section["sh_addralign"]) - len(buffer)))
        addresses[index] = load_address + len(buffer)
        buffer.extend(section.data())
    end = len(buffer)
    for index, section in zero_filled:
        end = align_up(end, section["sh_addralign"])
        addresses[index] = load_address + end
        end += section["sh_size"]
    if load_address + end > _ADDRESS_LIMIT:
        raise LayoutError(f"purgatory: {end:#x} bytes at {load_address:#x} pass the 64-bit limit")
    return addresses, buffer, end, alignment


def _global_symbols(elf: Any, section_addresses: dict[int, int]) -> dict[str, PurgatorySymbol]:
    """Global and weak symbols by name; local names may repeat across files."""
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        raise LayoutError("purgatory: object has no symbol table")
    symbols: dict[str, PurgatorySymbol] = {}
    for symbol in symtab.iter_symbols():
        if symbol["st_info"]["bind"] not in ("STB_GLOBAL", "STB_WEAK") or not symbol.name:
            continue
        address = _symbol_address(elf, symbol, section_addresses)
        shndx = symbol["st_shndx"]
        if shndx == _SHN_ABS:
            section, in_buffer = "*ABS*", False
        else:
            section = elf.get_section(shndx).name
            in_buffer = elf.get_section(shndx)["sh_type"] != "SHT_NOBITS"
        symbols[symbol.name] = PurgatorySymbol(
            symbol.name, address, symbol["st_size"], section, in_buffer
        )
    return symbols


def _symbol_address(elf: Any, symbol: Any, section_addresses: dict[int, int]) -> int:
    shndx = symbol["st_shndx"]
    name = symbol.name or "(unnamed)"
    if shndx == _SHN_UNDEF:
        raise LayoutError(f"purgatory: undefined symbol {name!r}")
    if shndx == _SHN_COMMON:
        raise LayoutError(f"purgatory: common symbol {name!r} (build with -fno-common)")
    if shndx == _SHN_ABS:
        return int(symbol["st_value"])
    if not isinstance(shndx, int) or shndx not in section_addresses:
        raise LayoutError(f"purgatory: symbol {name!r} is in a section that is not loaded")
    return section_addresses[shndx] + int(symbol["st_value"])


def _apply_relocations(
    elf: Any,
    relocations: dict[int, _Relocation | None],
    section_addresses: dict[int, int],
    buffer: bytearray,
    load_address: int,
) -> None:
    for reloc_section in elf.iter_sections():
        kind = reloc_section["sh_type"]
        if kind not in ("SHT_RELA", "SHT_REL"):
            continue
        symtab = elf.get_section(reloc_section["sh_link"])
        target_index = reloc_section["sh_info"]
        if target_index not in section_addresses:
            continue  # relocations for non-loaded sections (debug info, notes)
        if kind == "SHT_REL":
            raise LayoutError(
                f"purgatory: {reloc_section.name}: REL relocations are not supported, only RELA"
            )
        if elf.get_section(target_index)["sh_type"] == "SHT_NOBITS":
            raise LayoutError(f"purgatory: {reloc_section.name}: relocations against .bss")
        target_name = elf.get_section(target_index).name
        target_size = elf.get_section(target_index)["sh_size"]
        target_address = section_addresses[target_index]
        for relocation in reloc_section.iter_relocations():
            offset = relocation["r_offset"]
            symbol = symtab.get_symbol(relocation["r_info_sym"])
            where = f"{target_name}+{offset:#x}"
            label = _symbol_label(elf, symbol) if relocation["r_info_sym"] else "(absolute)"
            type_number = relocation["r_info_type"]
            if type_number not in relocations:
                raise LayoutError(
                    f"purgatory: unsupported relocation type {type_number} at {where} "
                    f"against {label!r}"
                )
            rule = relocations[type_number]
            if rule is None:
                continue
            if offset + rule.width > target_size:
                raise LayoutError(f"purgatory: {rule.name} at {where} runs past the section")
            place = target_address + offset
            # Symbol index 0 (the null symbol) stands for the value 0: the addend is absolute.
            base = (
                _symbol_address(elf, symbol, section_addresses) if relocation["r_info_sym"] else 0
            )
            value = base + relocation["r_addend"]
            if rule.pc_relative:
                value -= place
            start = place - load_address
            buffer[start : start + rule.width] = _encode(rule, value, where, label)


def _symbol_label(elf: Any, symbol: Any) -> str:
    if symbol.name:
        return str(symbol.name)
    shndx = symbol["st_shndx"]
    if isinstance(shndx, int):
        return str(elf.get_section(shndx).name)
    return "(unnamed)"


def _encode(rule: _Relocation, value: int, where: str, label: str) -> bytes:
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
