"""Lay out a relocatable (ET_REL) purgatory object at a load address.

The purgatory ships as a relocatable object so it can run wherever the layout
puts it. This module does what a linker would: place the SHF_ALLOC sections
in one buffer (.bss last, as zeros beyond the buffer), resolve symbols, apply
the relocations for the final address, and patch data symbols with checks.
It is pure: bytes in, an immutable `LoadedPurgatory` out.

Each architecture's purgatory module describes its relocation types as data
(`RelocationRules`): a value stored as an integer, or patched into
instruction fields (a branch's offset, the two halves of RISC-V's auipc
pair), or, for RISC-V's PCREL_LO12_*, taken from another relocation
(`RelocationRule.value_of`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

from builder.binfmt.elf import (
    ET_REL,
    SHF_ALLOC,
    SHN_ABS,
    SHN_COMMON,
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
    "FieldPart",
    "InstructionField",
    "LoadedPurgatory",
    "PurgatorySymbol",
    "RelocationRule",
    "RelocationRules",
    "load_purgatory",
]

_ADDRESS_LIMIT = 1 << 64


class FieldPart(StrEnum):
    """Which bits of a relocation's value an instruction field holds."""

    # All of them: the value is a multiple of 1 << scale and fits bits + scale bits signed.
    WHOLE = "whole"
    # The upper bits from `scale` on, rounded because the low part beside it is
    # sign-extended (RISC-V's auipc and lui: hi20 = (value + 0x800) >> 12).
    HIGH = "high"
    # The low `bits` bits only (RISC-V's lo12); a HIGH field holds the rest.
    LOW = "low"


@dataclass(frozen=True)
class InstructionField:
    """An immediate inside a little-endian instruction already at the place.

    The immediate is the value's bits [scale, scale + bits) as `part` says;
    ``insert`` puts it into the instruction word (`width` bytes, at `offset`
    from the relocation's place) and returns the new word.
    """

    bits: int
    scale: int
    insert: Callable[[int, int], int]
    width: int = 4  # 2 for RISC-V's compressed instructions
    offset: int = 0  # the second instruction of a pair (RISC-V's jalr after auipc): 4
    part: FieldPart = FieldPart.WHOLE


@dataclass(frozen=True)
class RelocationRule:
    """How one relocation type computes and stores its value.

    Without `fields` the value is stored as a little-endian integer of `width`
    bytes; with them it is patched into each instruction field (RISC
    architectures), the range checks being the fields' (`signed` unused).
    With `value_of`, S + A names the place of a relocation of that type, and
    this one stores that relocation's value (RISC-V's PCREL_LO12_I/S, whose
    symbol is the label of the auipc carrying the PCREL_HI20).
    """

    name: str
    width: int  # bytes written at the place
    pc_relative: bool  # value is S + A - P rather than S + A
    signed: bool | None  # range check: True signed, False unsigned, None wraps (64-bit)
    fields: tuple[InstructionField, ...] = ()
    value_of: int | None = None


@dataclass(frozen=True)
class RelocationRules:
    """The relocation types one architecture's purgatory needs (None: nothing to do).

    Each architecture's purgatory module holds its own (x86_64.RELOCATIONS), in
    its record (record.py).
    `refused` names types that are known and never acceptable, with the reason.
    """

    machine: int  # e_machine of the objects these rules are for
    rules: Mapping[int, RelocationRule | None]
    refused: Mapping[int, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


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
        >>> purgatory = x86_64.load_x86_64_purgatory(0x7F000000)
        >>> address, size = purgatory.symbol("purgatory_sha256_digest")
        >>> 0x7F000000 <= address < 0x7F000000 + purgatory.memsz, size
        (True, 32)
        """
        found = self._lookup(name)
        return found.address, found.size

    def read(self, name: str) -> bytes:
        """The current bytes of patchable symbol `name`.

        >>> from builder.kexec.purgatory import x86_64
        >>> purgatory = x86_64.load_x86_64_purgatory(0x7F000000)
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
        >>> purgatory = x86_64.load_x86_64_purgatory(0x7F000000)
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
    obj: bytes,
    load_address: int,
    relocations: RelocationRules,
    *,
    entry_symbol: str = "purgatory_start",
) -> LoadedPurgatory:
    """Relocate the ET_REL object `obj` to run at `load_address`.

    Raises `LayoutError` for anything the purgatory cannot be: not ET_REL, not
    the architecture of `relocations` or a relocation type it does not know,
    an undefined symbol, a 32-bit relocation that does not fit, a misaligned
    load address.

    >>> from builder.kexec.purgatory import x86_64
    >>> shipped = x86_64.PURGATORY.shipped_object()
    >>> purgatory = load_purgatory(shipped, 0x7F000000, x86_64.RELOCATIONS)
    >>> purgatory.entry == purgatory.symbol("purgatory_start")[0]
    True
    """
    elf = _open(obj)
    if elf.machine != relocations.machine:
        raise LayoutError(
            f"purgatory: built for e_machine {elf.machine}, expected {relocations.machine}"
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
    try:
        elf = ElfFile(obj, "purgatory", LayoutError)
    except LayoutError as error:
        reason = str(error).removeprefix("purgatory: ")
        raise LayoutError(f"purgatory: not an ELF object: {reason}") from None
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


def _relocated_section(elf: ElfFile, relocations: Section, loaded: dict[int, int]) -> bool:
    """Whether `relocations` applies to a loaded section (and is of a kind we apply)."""
    if relocations.type not in (SHT_RELA, SHT_REL) or relocations.info not in loaded:
        return False  # not relocations, or for sections not loaded (debug info, notes)
    if relocations.type == SHT_REL:
        raise LayoutError(
            f"purgatory: {relocations.name}: REL relocations are not supported, only RELA"
        )
    if elf.sections[relocations.info].type == SHT_NOBITS:
        raise LayoutError(f"purgatory: {relocations.name}: relocations against .bss")
    return True


@dataclass(frozen=True)
class _Pending:
    """One relocation to apply: its rule, where it is, S + A."""

    type: int
    rule: RelocationRule
    place: int
    target: int  # S + A
    where: str
    label: str


def _pending_relocations(
    elf: ElfFile, relocations: RelocationRules, section_addresses: dict[int, int]
) -> Iterator[_Pending]:
    """Every relocation of the loaded sections that has something to do, checked."""
    for reloc_section in elf.sections:
        if not _relocated_section(elf, reloc_section, section_addresses):
            continue
        symbols = elf.symbols(elf.sections[reloc_section.link])
        target = elf.sections[reloc_section.info]
        for relocation in elf.relocations(reloc_section):
            offset = relocation.offset
            symbol = symbols[relocation.symbol]
            where = f"{target.name}+{offset:#x}"
            label = _symbol_label(elf, symbol) if relocation.symbol else "(absolute)"
            if relocation.type in relocations.refused:
                raise LayoutError(
                    f"purgatory: relocation type {relocation.type} at {where}: "
                    f"{relocations.refused[relocation.type]}"
                )
            if relocation.type not in relocations.rules:
                raise LayoutError(
                    f"purgatory: unsupported relocation type {relocation.type} at {where} "
                    f"against {label!r}"
                )
            rule = relocations.rules[relocation.type]
            if rule is None:
                continue
            if offset + rule.width > target.size:
                raise LayoutError(f"purgatory: {rule.name} at {where} runs past the section")
            # Symbol index 0 (the null symbol) stands for the value 0: the addend is absolute.
            base = _symbol_address(symbol, section_addresses) if relocation.symbol else 0
            place = section_addresses[target.index] + offset
            yield _Pending(relocation.type, rule, place, base + relocation.addend, where, label)


def _apply_relocations(
    elf: ElfFile,
    relocations: RelocationRules,
    section_addresses: dict[int, int],
    buffer: bytearray,
    load_address: int,
) -> None:
    """Apply every relocation; those whose value is another's (`value_of`) last."""
    pending = sorted(_pending_relocations(elf, relocations, section_addresses),
                     key=lambda item: item.rule.value_of is not None)  # fmt: skip
    values: dict[tuple[int, int], int] = {}  # (type, place) -> the value it stored
    for item in pending:
        rule = item.rule
        if rule.value_of is not None:
            value = values.get((rule.value_of, item.target))
            if value is None:
                partner = relocations.rules.get(rule.value_of)
                name = partner.name if partner is not None else f"type {rule.value_of}"
                raise LayoutError(
                    f"purgatory: relocation {rule.name} at {item.where} against {item.label!r}: "
                    f"no {name} at {item.target:#x}"
                )
        else:
            value = item.target - item.place if rule.pc_relative else item.target
        values[(item.type, item.place)] = value
        start = item.place - load_address
        old = bytes(buffer[start : start + rule.width])
        buffer[start : start + rule.width] = _encode(rule, value, item.where, item.label, old)


def _symbol_label(elf: ElfFile, symbol: Symbol) -> str:
    if symbol.name:
        return symbol.name
    if symbol.shndx < len(elf.sections):
        return elf.sections[symbol.shndx].name
    return "(unnamed)"


def _encode(rule: RelocationRule, value: int, where: str, label: str, old: bytes) -> bytes:
    if rule.fields:
        patched = bytearray(old)
        for field in rule.fields:
            span = slice(field.offset, field.offset + field.width)
            patched[span] = _patch_instruction(rule.name, field, value, bytes(patched[span]),
                                               f"{where} against {label!r}")  # fmt: skip
        return bytes(patched)
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


def _field_immediate(name: str, field: InstructionField, value: int, where: str) -> int:
    """The bits of `value` that `field` holds, after its range and alignment checks."""
    mask = (1 << field.bits) - 1
    if field.part is FieldPart.LOW:
        return value & mask
    if field.part is FieldPart.HIGH:
        value += 1 << (field.scale - 1)  # the low part is sign-extended: round to nearest
    elif value % (1 << field.scale):
        raise LayoutError(
            f"purgatory: relocation {name} at {where}: {value:#x} is not a multiple of "
            f"{1 << field.scale}"
        )
    bits = field.bits + field.scale
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise LayoutError(
            f"purgatory: relocation {name} at {where} overflows: {value:#x} does not fit "
            f"{bits} bits signed"
        )
    return (value >> field.scale) & mask


def _patch_instruction(name: str, field: InstructionField, value: int, old: bytes,
                       where: str) -> bytes:  # fmt: skip
    immediate = _field_immediate(name, field, value, where)
    word = field.insert(int.from_bytes(old, "little"), immediate)
    return (word % (1 << (8 * field.width))).to_bytes(field.width, "little")


def absolute_places(obj: bytes, relocations: RelocationRules) -> tuple[int, ...]:
    """Offsets of the u64 words that hold the load address plus a constant.

    What kdump-load's plan needs to move a purgatory relocated for address 0
    anywhere: add the load address to each of these words. Every other
    relocation is PC-relative inside the buffer and the same at every
    address; an absolute one narrower than 64 bits cannot be moved that way
    and is refused.

    >>> from builder.kexec.purgatory import x86_64
    >>> len(absolute_places(x86_64.PURGATORY.shipped_object(), x86_64.RELOCATIONS)) > 0
    True
    """
    elf = _open(obj)
    section_addresses, _buffer, _memsz, _alignment = _place_sections(elf, 0)
    places = []
    for item in _pending_relocations(elf, relocations, section_addresses):
        rule = item.rule
        if rule.pc_relative or rule.value_of is not None:
            continue
        if rule.fields or rule.width != 8:
            raise LayoutError(
                f"purgatory: absolute relocation {rule.name} at {item.where} is narrower than "
                "64 bits; a plan cannot move it"
            )
        places.append(item.place)
    return tuple(sorted(places))
