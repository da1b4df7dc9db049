"""Flattened device tree (DTB, version 17): a bounds-checked reader and a canonical writer.

The format (Devicetree Specification, "Flattened Devicetree (DTB) Format"):
a 40-byte big-endian header; the memory reservation block ({u64 address,
u64 size} pairs ending with a zero pair); the structure block (tokens
FDT_BEGIN_NODE name, FDT_END_NODE, FDT_PROP {len, nameoff} value, FDT_NOP,
FDT_END, all 4-byte aligned); the strings block (NUL-terminated property
names).

`parse_fdt` checks every offset and length it follows and raises the
caller's error type naming the byte offset (through `ByteReader`); it never
reads past the blob or its blocks. `DeviceTree.to_bytes` writes a canonical
blob: header, reservations, structure, strings in that order (as dtc does),
NOPs dropped, property names deduplicated in first-use order and no padding,
so the same tree always gives the same bytes (QEMU pads the DTB it passes to
1 MiB; a capture kernel does not need that).

Why not pylibfdt (the dtc project's binding): PyPI has only its source
distribution, which needs swig and a C compiler at install time, and
Debian's python3-libfdt is built for the system Python only, neither our
virtual environment nor the Python a target machine runs `load` with. The
subset needed here (read a tree, edit /chosen, write it back) is small.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from builder.binfmt.reader import ByteReader
from builder.errors import FormatError, KdumpBuildError

__all__ = [
    "FDT_MAGIC",
    "DeviceTree",
    "MemoryReservation",
    "Node",
    "cells",
    "decode_cells",
    "format_value",
    "is_fdt",
    "parse_fdt",
]

FDT_MAGIC = b"\xd0\x0d\xfe\xed"
_BEGIN_NODE = 1
_END_NODE = 2
_PROP = 3
_NOP = 4
_END = 9
_HEADER = struct.Struct(">10I")  # magic .. size_dt_struct (v17)
_RESERVATION = struct.Struct(">QQ")
_VERSION = 17
_LAST_COMPATIBLE = 16
_MAX_DEPTH = 64
# drivers/of/of_private.h: OF_ROOT_NODE_ADDR_CELLS_DEFAULT and _SIZE_CELLS_DEFAULT
# (1 and 1 outside SPARC), what the kernel assumes for a root without the properties.
_ROOT_ADDRESS_CELLS_DEFAULT = 1
_ROOT_SIZE_CELLS_DEFAULT = 1


@dataclass(frozen=True)
class MemoryReservation:
    """One /memreserve/ entry of the memory reservation block."""

    address: int
    size: int


@dataclass(frozen=True)
class Node:
    """A node: its name (unit address included), properties in order, children in order."""

    name: str
    properties: tuple[tuple[str, bytes], ...] = ()
    children: tuple[Node, ...] = ()

    def property(self, name: str) -> bytes | None:
        """The value of property `name`, None if the node has none."""
        for key, value in self.properties:
            if key == name:
                return value
        return None

    def child(self, name: str) -> Node | None:
        """The child called `name` (unit address included), None if there is none."""
        for node in self.children:
            if node.name == name:
                return node
        return None

    def with_properties(self, updates: Mapping[str, bytes | None]) -> Node:
        """A copy with `updates` applied: None deletes, an existing one keeps its place.

        >>> node = Node("chosen", (("a", b"1"), ("b", b"2")))
        >>> node.with_properties({"a": None, "c": b"3", "b": b"4"}).properties
        (('b', b'4'), ('c', b'3'))
        """
        for name in updates:
            if not name or "\0" in name:
                raise FormatError(f"device tree: bad property name {name!r}")
        kept = [(key, updates.get(key, value)) for key, value in self.properties]
        known = {key for key, _ in self.properties}
        added = [(key, value) for key, value in updates.items() if key not in known]
        merged = tuple((key, value) for key, value in kept + added if value is not None)
        return replace(self, properties=merged)

    def with_child(self, node: Node) -> Node:
        """A copy with `node` replacing the child of its name, or appended."""
        if self.child(node.name) is None:
            return replace(self, children=(*self.children, node))
        children = tuple(node if child.name == node.name else child for child in self.children)
        return replace(self, children=children)


@dataclass(frozen=True)
class DeviceTree:
    """A parsed device tree: the root node, the /memreserve/ entries, the boot CPU."""

    root: Node
    reservations: tuple[MemoryReservation, ...] = ()
    boot_cpuid_phys: int = 0

    def node(self, path: str) -> Node | None:
        """The node at absolute `path` (``/chosen``), None where it does not exist."""
        node: Node | None = self.root
        for part in _split(path):
            node = node.child(part) if node is not None else None
        return node

    def with_node(self, path: str, node: Node) -> DeviceTree:
        """A copy with `node` put at `path` (its parents must exist), named after path's end."""
        parts = _split(path)
        if not parts:
            return replace(self, root=replace(node, name=""))
        return replace(self, root=_put(self.root, parts, node))

    def root_cells(self) -> tuple[int, int]:
        """The root's #address-cells and #size-cells, with the kernel's defaults."""
        return (
            _u32_property(self.root, "#address-cells", _ROOT_ADDRESS_CELLS_DEFAULT),
            _u32_property(self.root, "#size-cells", _ROOT_SIZE_CELLS_DEFAULT),
        )

    def encode_ranges(self, ranges: Iterable[tuple[int, int]]) -> bytes:
        """``<address size>`` pairs in the root's cell sizes (for /chosen properties)."""
        address_cells, size_cells = self.root_cells()
        return b"".join(cells(address, address_cells) + cells(size, size_cells)
                        for address, size in ranges)  # fmt: skip

    def decode_ranges(self, value: bytes) -> list[tuple[int, int]]:
        """The ``<address size>`` pairs of a property such as ``reg``, in root cells."""
        address_cells, size_cells = self.root_cells()
        numbers = decode_cells(value)
        stride = address_cells + size_cells
        if stride == 0 or len(numbers) % stride:
            raise FormatError(
                f"device tree: {len(value)} bytes are not whole <address size> pairs "
                f"of {address_cells}+{size_cells} cells"
            )
        pairs = []
        for index in range(0, len(numbers), stride):
            address = _join(numbers[index : index + address_cells])
            size = _join(numbers[index + address_cells : index + stride])
            pairs.append((address, size))
        return pairs

    def to_bytes(self) -> bytes:
        """The canonical v17 blob of this tree (see the module docstring).

        >>> tree = DeviceTree(Node("", (("model", b"x\\0"),), (Node("chosen"),)))
        >>> blob = tree.to_bytes()
        >>> parse_fdt(blob, "t") == tree, parse_fdt(blob, "t").to_bytes() == blob
        (True, True)
        """
        writer = _Writer()
        writer.node(self.root, 0)
        writer.word(_END)
        reservations = b"".join(_RESERVATION.pack(entry.address, entry.size)
                                for entry in self.reservations)  # fmt: skip
        reservations += _RESERVATION.pack(0, 0)
        off_rsvmap = _HEADER.size  # 40: already 8-byte aligned
        off_struct = off_rsvmap + len(reservations)
        off_strings = off_struct + len(writer.structure)
        total = off_strings + len(writer.strings)
        header = _HEADER.pack(
            int.from_bytes(FDT_MAGIC, "big"), total, off_struct, off_strings, off_rsvmap,
            _VERSION, _LAST_COMPATIBLE, self.boot_cpuid_phys, len(writer.strings),
            len(writer.structure),
        )  # fmt: skip
        return header + reservations + bytes(writer.structure) + bytes(writer.strings)


def cells(value: int, count: int) -> bytes:
    """`value` as `count` big-endian 32-bit cells; it must fit.

    >>> cells(0x1_2345_6789, 2).hex()
    '0000000123456789'
    """
    if count < 0 or value < 0 or value >> (32 * count):
        raise FormatError(f"device tree: {value:#x} does not fit in {count} cells")
    return value.to_bytes(4 * count, "big")


def decode_cells(value: bytes) -> tuple[int, ...]:
    """A property value as big-endian 32-bit cells.

    >>> decode_cells(bytes.fromhex("0000000100000002"))
    (1, 2)
    """
    if len(value) % 4:
        raise FormatError(f"device tree: {len(value)} bytes are not whole 32-bit cells")
    return struct.unpack(f">{len(value) // 4}I", value)


def format_value(value: bytes) -> str:
    """A property value the way dtc writes it: strings, ``<cells>`` or ``[bytes]``.

    >>> format_value(b"console=ttyAMA0\\0"), format_value(b"a\\0b\\0")
    ('"console=ttyAMA0"', '"a", "b"')
    >>> format_value(bytes.fromhex("0000000040000000")), format_value(b""), format_value(b"\\x01")
    ('<0x00000000 0x40000000>', '(empty)', '[01]')
    """
    if not value:
        return "(empty)"
    if value.endswith(b"\0") and b"\0\0" not in value and not value.startswith(b"\0"):
        texts = value[:-1].split(b"\0")
        if all(text.isascii() and text.decode().isprintable() for text in texts):
            return ", ".join(f'"{text.decode()}"' for text in texts)
    if len(value) % 4 == 0:
        return "<" + " ".join(f"{cell:#010x}" for cell in decode_cells(value)) + ">"
    return "[" + value.hex(" ") + "]"


def is_fdt(data: bytes) -> bool:
    """Whether `data` starts with the device tree magic."""
    return data[:4] == FDT_MAGIC


def parse_fdt(data: bytes, name: str, error: type[KdumpBuildError] = FormatError) -> DeviceTree:
    """Read a DTB; anything malformed is one `error` naming `name` and the byte offset.

    >>> parse_fdt(b"\\xd0\\x0d\\xfe\\xed" + bytes(4), "fdt")
    Traceback (most recent call last):
    ...
    builder.errors.FormatError: fdt: truncated at byte 0x0: expected device tree header ...
    """
    reader = ByteReader(data, name, error, noun="file")
    reader.need(0, _HEADER.size, "device tree header")
    reader.expect(0, FDT_MAGIC, "device tree magic")
    (_magic, total, off_struct, off_strings, off_rsvmap, version, last_compatible,
     boot_cpuid, size_strings, size_struct) = _HEADER.unpack_from(data, 0)  # fmt: skip
    if version < _VERSION or last_compatible > _VERSION:
        reader.fail(20, f"version {version} (last compatible {last_compatible}): only v17 is read")
    if not _HEADER.size <= total <= len(data):
        reader.fail(4, f"totalsize {total:#x} outside the file of {len(data):#x} bytes")
    blob = ByteReader(data[:total], name, error, noun="device tree (totalsize)")
    _check_block(blob, "structure block", off_struct, size_struct, 8, alignment=4)
    _check_block(blob, "strings block", off_strings, size_strings, 12, alignment=1)
    if off_rsvmap % 8 or not _HEADER.size <= off_rsvmap < total:
        blob.fail(16, f"memory reservation block at {off_rsvmap:#x} is misplaced")
    structure = ByteReader(data[: off_struct + size_struct], name, error, noun="structure block")
    strings = ByteReader(data[: off_strings + size_strings], name, error, noun="strings block")
    return DeviceTree(
        root=_StructureReader(structure, off_struct, strings, off_strings).read(),
        reservations=tuple(_reservations(blob, off_rsvmap)),
        boot_cpuid_phys=boot_cpuid,
    )


def _check_block(reader: ByteReader, what: str, offset: int, size: int, field: int,
                 *, alignment: int) -> None:  # fmt: skip
    """The block the header field at `field` describes lies inside totalsize."""
    if offset < _HEADER.size or offset % alignment:
        reader.fail(field, f"{what} at {offset:#x} is misplaced")
    if offset + size > len(reader.data):
        reader.fail(
            field, f"{what} {offset:#x}+{size:#x} runs past totalsize {len(reader.data):#x}"
        )


def _reservations(reader: ByteReader, offset: int) -> Iterable[MemoryReservation]:
    while True:
        address = reader.u64(offset, "memory reservation address", big_endian=True)
        size = reader.u64(offset + 8, "memory reservation size", big_endian=True)
        if address == 0 and size == 0:
            return
        yield MemoryReservation(address, size)
        offset += _RESERVATION.size


@dataclass
class _OpenNode:
    """A node being read: what it has so far."""

    name: str
    at: int
    properties: list[tuple[str, bytes]]
    children: list[Node]

    def close(self) -> Node:
        return Node(self.name, tuple(self.properties), tuple(self.children))


class _StructureReader:
    """Walks the structure block's tokens into nodes (iteratively: no recursion limit)."""

    def __init__(self, structure: ByteReader, start: int, strings: ByteReader,
                 strings_start: int) -> None:  # fmt: skip
        self.reader = structure
        self.offset = start
        self.strings = strings
        self.strings_start = strings_start
        self.stack: list[_OpenNode] = []
        self.root: Node | None = None

    def read(self) -> Node:
        while True:
            at = self.offset
            token = self.reader.u32(at, "structure token", big_endian=True)
            self.offset += 4
            if token == _BEGIN_NODE:
                self._begin(at)
            elif token == _END_NODE:
                self._end(at)
            elif token == _PROP:
                self._property(at)
            elif token == _END:
                if self.stack or self.root is None:
                    self.reader.fail(at, "FDT_END inside an open node")
                return self.root
            elif token != _NOP:
                self.reader.fail(at, f"unknown structure token {token:#x}")

    def _begin(self, at: int) -> None:
        name = _name(self.reader, self.offset, "node name")
        self.offset += len(name) + 1
        self.offset += -self.offset % 4
        if self.root is not None and not self.stack:
            self.reader.fail(at, "a second root node")
        if not self.stack and name:
            self.reader.fail(at, f"root node has a name {name!r}")
        if self.stack and any(child.name == name for child in self.stack[-1].children):
            self.reader.fail(at, f"duplicate node {name!r}")
        if len(self.stack) >= _MAX_DEPTH:
            self.reader.fail(at, f"nodes nested deeper than {_MAX_DEPTH}")
        self.stack.append(_OpenNode(name, at, [], []))

    def _end(self, at: int) -> None:
        if not self.stack:
            self.reader.fail(at, "FDT_END_NODE without an open node")
        node = self.stack.pop().close()
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node

    def _property(self, at: int) -> None:
        if not self.stack:
            self.reader.fail(at, "property outside any node")
        length = self.reader.u32(self.offset, "property length", big_endian=True)
        name_offset = self.reader.u32(self.offset + 4, "property name offset", big_endian=True)
        strings_size = len(self.strings.data) - self.strings_start
        if name_offset >= strings_size:
            self.reader.fail(
                self.offset + 4,
                f"property name offset {name_offset:#x} outside the strings block "
                f"({strings_size:#x} bytes)",
            )
        value = self.reader.raw(self.offset + 8, length, "property value")
        name = _name(self.strings, self.strings_start + name_offset, "property name")
        if any(key == name for key, _ in self.stack[-1].properties):
            self.reader.fail(at, f"duplicate property {name!r}")
        self.stack[-1].properties.append((name, value))
        self.offset += 8 + length + (-length % 4)


def _name(reader: ByteReader, offset: int, what: str) -> str:
    """A NUL-terminated name of printable ASCII (written back byte for byte)."""
    text = reader.cstring(offset, what)
    raw = reader.raw(offset, len(text), what)
    if not all(0x20 < byte < 0x7F for byte in raw):
        reader.fail(offset, f"{what} is not printable ASCII")
    return text


class _Writer:
    """Structure and strings blocks of a tree, written in one pass."""

    def __init__(self) -> None:
        self.structure = bytearray()
        self.strings = bytearray()
        self.names: dict[str, int] = {}

    def word(self, *values: int) -> None:
        self.structure += struct.pack(f">{len(values)}I", *values)

    def padded(self, data: bytes) -> None:
        self.structure += data + bytes(-len(data) % 4)

    def name_offset(self, name: str) -> int:
        if name not in self.names:
            self.names[name] = len(self.strings)
            self.strings += name.encode("ascii") + b"\0"
        return self.names[name]

    def node(self, node: Node, depth: int) -> None:
        if depth >= _MAX_DEPTH:
            raise FormatError(f"device tree: nodes nested deeper than {_MAX_DEPTH}")
        self.word(_BEGIN_NODE)
        self.padded(node.name.encode("ascii") + b"\0")
        for name, value in node.properties:
            self.word(_PROP, len(value), self.name_offset(name))
            self.padded(value)
        for child in node.children:
            self.node(child, depth + 1)
        self.word(_END_NODE)


def _split(path: str) -> list[str]:
    if not path.startswith("/"):
        raise FormatError(f"device tree: path {path!r} is not absolute")
    return [part for part in path.split("/") if part]


def _put(parent: Node, parts: Sequence[str], node: Node) -> Node:
    if len(parts) == 1:
        return parent.with_child(replace(node, name=parts[0]))
    child = parent.child(parts[0])
    if child is None:
        raise FormatError(f"device tree: no node {parts[0]!r} under {parent.name or '/'}")
    return parent.with_child(_put(child, parts[1:], node))


def _u32_property(node: Node, name: str, default: int) -> int:
    value = node.property(name)
    if value is None:
        return default
    if len(value) != 4:
        raise FormatError(f"device tree: {name} is {len(value)} bytes, expected one cell")
    return int.from_bytes(value, "big")


def _join(numbers: Sequence[int]) -> int:
    result = 0
    for number in numbers:
        result = result << 32 | number
    return result
