"""Physical memory maps: `/proc/iomem`, a recipe's fixed map, and a hole allocator.

Every range here is half-open, ``[start, end)``. `/proc/iomem` prints inclusive
ends; the parser converts them once, at the edge, so no caller ever adds 1.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from builder.errors import LayoutError, RecipeError
from builder.units import PAGE_SIZE, align_down, align_up

ADDRESS_LIMIT = 1 << 64  # exclusive upper bound of a 64-bit physical address


@dataclass(frozen=True, order=True)
class Range:
    """A half-open physical address range ``[start, end)``.

    >>> r = Range(0x1000, 0x3000)
    >>> r.size, str(r)
    (8192, '0x1000-0x3000')
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= ADDRESS_LIMIT:
            raise LayoutError(f"invalid range [{self.start:#x}, {self.end:#x})")

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def last(self) -> int:
        """The inclusive last address, as `/proc/iomem` and e820 users write it."""
        return self.end - 1

    def contains(self, other: Range) -> bool:
        return self.start <= other.start and other.end <= self.end

    def contains_address(self, address: int) -> bool:
        return self.start <= address < self.end

    def overlaps(self, other: Range) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{self.start:#x}-{self.end:#x}"

    def to_json(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "size": self.size}


class Kind(enum.StrEnum):
    """What a resource is, as far as kexec cares. Values are the iomem names."""

    SYSTEM_RAM = "System RAM"
    CRASH_KERNEL = "Crash kernel"
    ACPI_TABLES = "ACPI Tables"
    ACPI_NVS = "ACPI Non-volatile Storage"
    RESERVED = "Reserved"
    KERNEL = "Kernel"  # "Kernel code", "Kernel rodata", "Kernel data", "Kernel bss"
    PERSISTENT_MEMORY = "Persistent Memory"
    OTHER = "other"  # PCI windows, device BARs, ROMs, APICs, ...


# The kernel names its own image sections; all of them are plain RAM to a layout.
_KERNEL_SECTION_NAMES = frozenset({"Kernel code", "Kernel rodata", "Kernel data", "Kernel bss"})

# Short names a recipe may use for a memory map entry, beside the iomem names.
_RECIPE_ALIASES = {
    "ram": Kind.SYSTEM_RAM,
    "system ram": Kind.SYSTEM_RAM,
    "crash": Kind.CRASH_KERNEL,
    "crash kernel": Kind.CRASH_KERNEL,
    "acpi": Kind.ACPI_TABLES,
    "acpi tables": Kind.ACPI_TABLES,
    "nvs": Kind.ACPI_NVS,
    "acpi nvs": Kind.ACPI_NVS,
    "acpi non-volatile storage": Kind.ACPI_NVS,
    "reserved": Kind.RESERVED,
    "pmem": Kind.PERSISTENT_MEMORY,
    "persistent memory": Kind.PERSISTENT_MEMORY,
}

# Kinds that the capture kernel's memory map must keep (firmware data it reads).
FIRMWARE_KINDS = (Kind.ACPI_TABLES, Kind.ACPI_NVS, Kind.RESERVED)


def classify(name: str) -> Kind:
    """Map an iomem resource name to its `Kind`.

    >>> classify("ACPI Non-volatile Storage"), classify("Kernel bss"), classify("PCI Bus 0000:00")
    (<Kind.ACPI_NVS: 'ACPI Non-volatile Storage'>, <Kind.KERNEL: 'Kernel'>, <Kind.OTHER: 'other'>)
    """
    if name in _KERNEL_SECTION_NAMES:
        return Kind.KERNEL
    # arm64 writes memblock reservations as lowercase "reserved"; both mean "not free RAM".
    if name in ("Reserved", "reserved"):
        return Kind.RESERVED
    if name.startswith("Persistent Memory"):
        return Kind.PERSISTENT_MEMORY
    try:
        return Kind(name)
    except ValueError:
        return Kind.OTHER


@dataclass(frozen=True)
class Resource:
    """One node of the resource tree, with its children."""

    range: Range
    name: str
    children: tuple[Resource, ...] = ()

    @property
    def kind(self) -> Kind:
        return classify(self.name)

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.range.start,
            "end": self.range.end,
            "name": self.name,
            "kind": self.kind.value,
            "children": [child.to_json() for child in self.children],
        }


@dataclass(frozen=True)
class Region:
    """A flat, typed range: what an e820 table or a recipe entry holds."""

    range: Range
    kind: Kind
    name: str

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.range.start,
            "end": self.range.end,
            "kind": self.kind.value,
            "name": self.name,
        }


@dataclass(frozen=True)
class MemoryMap:
    """A physical memory map as a resource tree (top-level resources in address order).

    >>> m = parse_iomem("00100000-3fffffff : System RAM\\n  30000000-3bffffff : Crash kernel\\n")
    >>> str(m.crash_region()), [str(r) for r in m.ram_minus_crash()]
    ('0x30000000-0x3c000000', ['0x100000-0x30000000', '0x3c000000-0x40000000'])
    """

    resources: tuple[Resource, ...]
    # The `crashkernel=,cma` ranges (/sys/kernel/kexec/crash_cma_ranges): RAM of the
    # running system that the capture kernel gets as RAM too, and no part of the dump.
    # /proc/iomem does not show them (they stay "System RAM").
    crash_cma: tuple[Range, ...] = ()

    def with_crash_cma(self, ranges: Iterable[Range]) -> MemoryMap:
        """This map with the `,cma` ranges; each must lie inside System RAM.

        >>> m = parse_iomem("00100000-3fffffff : System RAM\\n  30000000-3bffffff : Crash kernel")
        >>> [str(r) for r in m.with_crash_cma([Range(0x8000000, 0xc000000)]).ram_minus_crash()]
        ['0x100000-0x8000000', '0xc000000-0x30000000', '0x3c000000-0x40000000']
        """
        cma = tuple(sorted(ranges))
        ram = self.system_ram()
        for piece in cma:
            if not any(block.contains(piece) for block in ram):
                raise LayoutError(f"crashkernel=,cma range {piece} is not inside System RAM")
        return replace(self, crash_cma=cma)

    def walk(self) -> Iterator[tuple[Resource, tuple[Resource, ...]]]:
        """Every resource in pre-order, with its ancestors (outermost first)."""
        stack: list[tuple[Resource, tuple[Resource, ...]]] = [
            (resource, ()) for resource in reversed(self.resources)
        ]
        while stack:
            resource, ancestors = stack.pop()
            yield resource, ancestors
            below = (*ancestors, resource)
            stack.extend((child, below) for child in reversed(resource.children))

    def of_kind(self, kind: Kind) -> tuple[Resource, ...]:
        """All resources of one kind, at any depth, in address order."""
        found = [resource for resource, _ in self.walk() if resource.kind is kind]
        return tuple(sorted(found, key=lambda resource: resource.range))

    def system_ram(self) -> tuple[Range, ...]:
        """The System RAM ranges (outermost ones only), in address order."""
        ranges = [
            resource.range
            for resource, ancestors in self.walk()
            if resource.kind is Kind.SYSTEM_RAM
            and not any(a.kind is Kind.SYSTEM_RAM for a in ancestors)
        ]
        return tuple(sorted(ranges))

    @property
    def total_ram(self) -> int:
        """Bytes of System RAM: what `crashkernel=` ranges are matched against.

        The kernel uses memblock_phys_mem_size(), which also counts the crash
        region; iomem's System RAM contains it too, so the two agree.
        """
        return sum(r.size for r in self.system_ram())

    def crash_ranges(self) -> tuple[Range, ...]:
        """Every "Crash kernel" range, in address order (x86: low one first)."""
        return tuple(resource.range for resource in self.of_kind(Kind.CRASH_KERNEL))

    def crash_region(self) -> Range:
        """The main crash region: the highest "Crash kernel" range.

        On x86 `crashkernel=X,high` also reserves a low range below 4 GiB; kexec
        segments must all lie in the main (highest) one.
        """
        ranges = self.crash_ranges()
        if not ranges:
            raise LayoutError("no 'Crash kernel' range in the memory map (no crashkernel=)")
        return ranges[-1]

    def crash_low_region(self) -> Range | None:
        """The extra low crash range (`crashkernel=,low` or its default), if any."""
        ranges = self.crash_ranges()
        return ranges[0] if len(ranges) > 1 else None

    def ram_minus_crash(self) -> tuple[Range, ...]:
        """System RAM without any crash range: what the vmcore's PT_LOADs describe.

        The `,cma` ranges are left out too: the capture kernel runs in them, and the
        kernel's own loader leaves them out of the dump as well (kexec_file).
        The in-kernel x86 loader also drops the low 1 MiB; a caller that wants
        that passes the result through `subtract` once more.
        """
        return subtract(self.system_ram(), (*self.crash_ranges(), *self.crash_cma))

    def firmware_regions(self) -> tuple[Region, ...]:
        """ACPI tables, ACPI NVS and reserved ranges outside System RAM.

        These go into the capture kernel's memory map so it can read ACPI and
        keep its hands off firmware memory. Reservations nested inside System
        RAM (arm64's memblock "reserved") are RAM to the capture kernel.
        """
        regions = [
            Region(resource.range, resource.kind, resource.name)
            for resource, ancestors in self.walk()
            if resource.kind in FIRMWARE_KINDS
            and not any(a.kind is Kind.SYSTEM_RAM for a in ancestors)
            # A reserved range inside another firmware range says the same thing twice.
            and not any(a.kind in FIRMWARE_KINDS for a in ancestors)
        ]
        return tuple(sorted(regions, key=lambda region: region.range))

    def regions(self) -> tuple[Region, ...]:
        """System RAM plus firmware regions, flat and sorted: an e820-like view."""
        ram = [Region(r, Kind.SYSTEM_RAM, Kind.SYSTEM_RAM.value) for r in self.system_ram()]
        return tuple(sorted([*ram, *self.firmware_regions()], key=lambda region: region.range))

    def to_json(self) -> dict[str, object]:
        cma = {"crash_cma": [piece.to_json() for piece in self.crash_cma]} if self.crash_cma else {}
        return {"resources": [resource.to_json() for resource in self.resources], **cma}


# "start-end : name", hex without 0x, indented two spaces per level.
_IOMEM_LINE = re.compile(r"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")


def parse_iomem(text: str, *, source: str = "/proc/iomem") -> MemoryMap:
    """Parse `/proc/iomem` text into a `MemoryMap` (ends converted to exclusive).

    Nesting comes from the indentation, as the kernel prints it. Reading the
    file as non-root yields all-zero addresses; that is refused rather than
    silently producing an empty map.

    >>> m = parse_iomem("00001000-0009fbff : System RAM\\n")
    >>> m.system_ram()
    (Range(start=4096, end=654336),)
    """
    # Each open level: (indent, range, name, children collected so far).
    stack: list[tuple[int, Range, str, list[Resource]]] = []
    top: list[Resource] = []
    nonzero = False

    def close_one() -> None:
        _, closed_range, closed_name, closed_children = stack.pop()
        node = Resource(closed_range, closed_name, tuple(closed_children))
        (stack[-1][3] if stack else top).append(node)

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _IOMEM_LINE.match(line.rstrip("\n"))
        if match is None:
            raise LayoutError(f"{source}: line {number}: not 'start-end : name': {line!r}")
        indent = len(match.group(1))
        first, last = int(match.group(2), 16), int(match.group(3), 16)
        name = match.group(4).strip()
        if last < first or last >= ADDRESS_LIMIT:
            raise LayoutError(f"{source}: line {number}: bad range {first:#x}-{last:#x}")
        nonzero = nonzero or last != 0
        current = Range(first, last + 1)
        while stack and stack[-1][0] >= indent:
            close_one()
        if stack and not stack[-1][1].contains(current):
            raise LayoutError(
                f"{source}: line {number}: {name!r} {current} lies outside its parent "
                f"{stack[-1][2]!r} {stack[-1][1]}"
            )
        stack.append((indent, current, name, []))
    while stack:
        close_one()
    if top and not nonzero:
        raise LayoutError(f"{source}: every address is zero; read it as root")
    return MemoryMap(tuple(top))


def _recipe_kind(kind: str, index: int) -> Kind:
    key = kind.strip().lower()
    if key in _RECIPE_ALIASES:
        return _RECIPE_ALIASES[key]
    for member in Kind:
        if member.value.lower() == key and member is not Kind.OTHER:
            return member
    choices = ", ".join(sorted(_RECIPE_ALIASES))
    raise RecipeError(f"memory map entry {index}: type {kind!r} is not one of {choices}")


def memory_map_from_entries(entries: Iterable[tuple[int, int, str]]) -> MemoryMap:
    """Build a `MemoryMap` from a recipe's fixed map: ``(start, end, type)``, end exclusive.

    Entries may come in any order; one that lies inside another becomes its
    child (a crash range inside RAM, say). Partial overlaps are refused.

    >>> m = memory_map_from_entries([(0x100000, 0x40000000, "ram"),
    ...                              (0x30000000, 0x3c000000, "crash")])
    >>> str(m.crash_region())
    '0x30000000-0x3c000000'
    """
    items: list[tuple[Range, Kind, int]] = []
    for index, entry in enumerate(entries):
        try:
            start, end, kind = entry
        except (TypeError, ValueError):
            raise RecipeError(
                f"memory map entry {index}: expected (start, end, type), got {entry!r}"
            ) from None
        if not (isinstance(start, int) and isinstance(end, int) and isinstance(kind, str)):
            raise RecipeError(f"memory map entry {index}: expected (int, int, str), got {entry!r}")
        if not 0 <= start < end <= ADDRESS_LIMIT:
            raise RecipeError(
                f"memory map entry {index}: need 0 <= start < end <= 2**64, got {start:#x}-{end:#x}"
            )
        items.append((Range(start, end), _recipe_kind(kind, index), index))
    # Parents before children: by start, then larger first.
    items.sort(key=lambda item: (item[0].start, -item[0].size))

    stack: list[tuple[Range, Kind, list[Resource]]] = []
    top: list[Resource] = []

    def close_one() -> None:
        closed_range, closed_kind, closed_children = stack.pop()
        node = Resource(closed_range, closed_kind.value, tuple(closed_children))
        (stack[-1][2] if stack else top).append(node)

    for current, kind, index in items:
        while stack and not stack[-1][0].overlaps(current):
            close_one()
        if stack and not stack[-1][0].contains(current):
            raise RecipeError(f"memory map entry {index}: {current} partly overlaps {stack[-1][0]}")
        stack.append((current, kind, []))
    while stack:
        close_one()
    return MemoryMap(tuple(top))


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> tuple[Range, ...]:
    """``ranges`` with every part covered by ``holes`` cut out, sorted; empty pieces dropped.

    >>> [str(r) for r in subtract([Range(0, 100)], [Range(10, 20), Range(50, 200)])]
    ['0x0-0xa', '0x14-0x32']
    """
    pieces = sorted(ranges)
    for hole in sorted(holes):
        next_pieces: list[Range] = []
        for piece in pieces:
            if not piece.overlaps(hole):
                next_pieces.append(piece)
                continue
            if piece.start < hole.start:
                next_pieces.append(Range(piece.start, hole.start))
            if hole.end < piece.end:
                next_pieces.append(Range(hole.end, piece.end))
        pieces = next_pieces
    return tuple(piece for piece in pieces if piece.size)


def find_hole(
    regions: Range | Sequence[Range],
    size: int,
    *,
    align: int = PAGE_SIZE,
    min_addr: int = 0,
    max_addr: int = ADDRESS_LIMIT,
    top_down: bool = True,
    taken: Iterable[Range] = (),
) -> Range:
    """Place ``size`` bytes in ``regions`` outside ``taken``; return the placed range.

    The start is a multiple of ``align`` (a power of two), the start is at or
    above ``min_addr`` and the end at or below ``max_addr`` (exclusive bound).
    Top-down picks the highest such place, bottom-up the lowest.

    >>> str(find_hole(Range(0x100000, 0x400000), 0x100000, align=0x100000))
    '0x300000-0x400000'
    >>> str(find_hole(Range(0x100000, 0x400000), 0x1000, top_down=False,
    ...               taken=[Range(0x100000, 0x101000)]))
    '0x101000-0x102000'
    """
    if size <= 0:
        raise LayoutError(f"cannot place {size} bytes: size must be positive")
    if align <= 0 or align & (align - 1):
        raise LayoutError(f"alignment {align:#x} is not a power of two")
    region_list = [regions] if isinstance(regions, Range) else list(regions)
    window_start, window_end = max(min_addr, 0), min(max_addr, ADDRESS_LIMIT)
    best: Range | None = None
    for free in subtract(region_list, taken):
        low, high = max(free.start, window_start), min(free.end, window_end)
        if high - low < size:
            continue
        if top_down:
            start = align_down(high - size, align)
            if start < low:
                continue
            if best is None or start > best.start:
                best = Range(start, start + size)
        else:
            start = align_up(low, align)
            if start + size > high:
                continue
            if best is None or start < best.start:
                best = Range(start, start + size)
    if best is None:
        where = ", ".join(str(r) for r in region_list) or "no region"
        raise LayoutError(
            f"no hole of {size:#x} bytes aligned to {align:#x} within "
            f"[{window_start:#x}, {window_end:#x}) in {where} "
            f"(largest free piece {_largest_free(region_list, taken):#x} bytes)"
        )
    return best


def _largest_free(regions: Sequence[Range], taken: Iterable[Range]) -> int:
    return max((piece.size for piece in subtract(regions, taken)), default=0)


class HoleAllocator:
    """Places ranges one after another inside fixed regions, remembering what it placed.

    >>> allocator = HoleAllocator(Range(0x1000000, 0x2000000))
    >>> str(allocator.allocate(0x1000)), str(allocator.allocate(0x1000))
    ('0x1fff000-0x2000000', '0x1ffe000-0x1fff000')
    """

    def __init__(self, regions: Range | Sequence[Range], taken: Iterable[Range] = ()) -> None:
        self._regions: tuple[Range, ...] = (
            (regions,) if isinstance(regions, Range) else tuple(regions)
        )
        self._taken: list[Range] = list(taken)

    @property
    def regions(self) -> tuple[Range, ...]:
        return self._regions

    @property
    def taken(self) -> tuple[Range, ...]:
        """Everything placed so far (and the initially taken ranges), in address order."""
        return tuple(sorted(self._taken))

    def allocate(
        self,
        size: int,
        *,
        align: int = PAGE_SIZE,
        min_addr: int = 0,
        max_addr: int = ADDRESS_LIMIT,
        top_down: bool = True,
    ) -> Range:
        """Place ``size`` bytes (see `find_hole`) and mark them taken."""
        placed = find_hole(
            self._regions,
            size,
            align=align,
            min_addr=min_addr,
            max_addr=max_addr,
            top_down=top_down,
            taken=self._taken,
        )
        self._taken.append(placed)
        return placed
