"""The capture kernel's device tree: the booted one with /chosen edited for a crash boot.

Device-tree architectures (arm64, riscv64) tell the capture kernel where its
memory and the ELF core header are through /chosen, not its command line.
`capture_device_tree` does to the DTB the main kernel booted with (its
/sys/firmware/fdt) what the kernel's own crash loader does
(drivers/of/kexec.c, of_kexec_alloc_and_setup_fdt), as pure bytes-in,
bytes-out:

- `bootargs`: the capture command line;
- `linux,elfcorehdr` = <address size> in the root's #address-cells /
  #size-cells;
- `linux,usable-memory-range`: every crash range, the main one first: the
  capture kernel caps its memory to the first pair and adds the second
  (drivers/of/fdt.c, early_init_dt_check_for_usable_mem_range,
  MAX_USABLE_RANGES = 2);
- `linux,initrd-start` / `-end` as u64 (end exclusive), or removed;
- `kaslr-seed` and `rng-seed` replaced by fresh ones, or removed: the booted
  DTB holds only a seed the kernel zeroed after use (kaslr_early.c) and a
  NOP'd rng-seed (drivers/of/fdt.c), so copying them passes on nothing;
- `linux,booted-from-kexec` set; `linux,ima-kexec-buffer` dropped (it
  points into the dead kernel); a /memreserve/ of the old initrd dropped.

No /memreserve/ is added: the capture kernel reserves the ELF core header
itself (fdt_reserve_elfcorehdr, after the reservation map; one over it only
makes it warn "elfcorehdr is overlapped") and its initrd (arm64_memblock_init).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

from builder.binfmt.fdt import DeviceTree, MemoryReservation, Node, format_value, parse_fdt
from builder.errors import FormatError, LayoutError
from builder.kexec.memmap import Range
from builder.units import page_up

__all__ = [
    "CHOSEN",
    "KASLR_SEED_SIZE",
    "RNG_SEED_SIZE",
    "BootSeeds",
    "DeviceTreeSummary",
    "capture_device_tree",
    "describe_device_tree",
    "firmware_reserved",
    "fresh_seeds",
]

CHOSEN = "/chosen"
KASLR_SEED_SIZE = 8  # a u64 (get_random_u64 in of_kexec_alloc_and_setup_fdt)
RNG_SEED_SIZE = 128  # drivers/of/kexec.c RNG_SEED_SIZE
MAX_USABLE_RANGES = 2  # drivers/of/fdt.c
_REPLACED = (
    "bootargs",
    "linux,elfcorehdr",
    "linux,usable-memory-range",
    "linux,initrd-start",
    "linux,initrd-end",
    "kaslr-seed",
    "rng-seed",
    "linux,ima-kexec-buffer",
    "linux,booted-from-kexec",
)


@dataclass(frozen=True)
class BootSeeds:
    """Fresh randomness for the capture kernel, drawn by the caller at load time."""

    kaslr: bytes = bytes(KASLR_SEED_SIZE)
    rng: bytes = bytes(RNG_SEED_SIZE)

    def __post_init__(self) -> None:
        if len(self.kaslr) != KASLR_SEED_SIZE or len(self.rng) != RNG_SEED_SIZE:
            raise LayoutError(
                f"seeds: kaslr-seed must be {KASLR_SEED_SIZE} bytes and rng-seed "
                f"{RNG_SEED_SIZE}, got {len(self.kaslr)} and {len(self.rng)}"
            )


def fresh_seeds() -> BootSeeds:
    """New randomness from the kernel's generator, as its own loader draws it (an effect).

    >>> fresh_seeds() != fresh_seeds()
    True
    """
    return BootSeeds(os.urandom(KASLR_SEED_SIZE), os.urandom(RNG_SEED_SIZE))


def capture_device_tree(
    booted: bytes,
    *,
    source: str,
    bootargs: str,
    elfcorehdr: Range,
    usable: Sequence[Range],
    initrd: Range | None,
    seeds: BootSeeds | None,
) -> bytes:
    """The capture kernel's DTB (canonical bytes), made from the DTB the main kernel booted with.

    `usable` lists the crash ranges, the main one first; `initrd` is where
    the initrd's bytes are (end exclusive); `seeds` None leaves both seeds
    out (an offline layout stays reproducible). Errors name `source`.
    """
    if not 1 <= len(usable) <= MAX_USABLE_RANGES:
        raise LayoutError(
            f"{len(usable)} crash ranges: the capture kernel reads at most "
            f"{MAX_USABLE_RANGES} from linux,usable-memory-range"
        )
    tree = parse_fdt(booted, source, LayoutError)
    chosen = tree.node(CHOSEN) or Node("chosen")
    try:
        values = _chosen_values(tree, bootargs, elfcorehdr, usable, initrd, seeds)
    except FormatError as error:
        raise LayoutError(f"{source}: {str(error).removeprefix('device tree: ')}") from None
    edited = replace(
        tree.with_node(CHOSEN, chosen.with_properties(values)),
        reservations=_without_old_initrd(tree.reservations, chosen),
    )
    return edited.to_bytes()


def _chosen_values(
    tree: DeviceTree,
    bootargs: str,
    elfcorehdr: Range,
    usable: Sequence[Range],
    initrd: Range | None,
    seeds: BootSeeds | None,
) -> dict[str, bytes | None]:
    """The /chosen properties a crash boot sets (None: removed); stale ones go first."""
    # Every property a crash boot owns: replaced in place, added at the end, or removed (None).
    values: dict[str, bytes | None] = dict.fromkeys(_REPLACED)
    values |= {
        "bootargs": bootargs.encode() + b"\0",
        "linux,elfcorehdr": tree.encode_ranges([(elfcorehdr.start, elfcorehdr.size)]),
        "linux,usable-memory-range": tree.encode_ranges([(r.start, r.size) for r in usable]),
    }
    if initrd is not None:
        values["linux,initrd-start"] = struct.pack(">Q", initrd.start)
        values["linux,initrd-end"] = struct.pack(">Q", initrd.end)
    if seeds is not None:
        values["kaslr-seed"] = seeds.kaslr
        values["rng-seed"] = seeds.rng
    values["linux,booted-from-kexec"] = b""
    return values


def _without_old_initrd(
    reservations: tuple[MemoryReservation, ...], chosen: Node
) -> tuple[MemoryReservation, ...]:
    """The reservations minus one covering the booted initrd (exactly, or to whole pages)."""
    start, end = chosen.property("linux,initrd-start"), chosen.property("linux,initrd-end")
    if start is None or end is None:
        return reservations
    first, last = int.from_bytes(start, "big"), int.from_bytes(end, "big")
    stale = {(first, last - first), (first, page_up(last) - first)}
    return tuple(entry for entry in reservations if (entry.address, entry.size) not in stale)


# Properties of /chosen that hold <address size> pairs in root cells.
_RANGE_PROPERTIES = ("linux,usable-memory-range", "linux,elfcorehdr")
_NUMBER_PROPERTIES = ("linux,initrd-start", "linux,initrd-end", "kaslr-seed")

ChosenValue = tuple[Range, ...] | int | str


@dataclass(frozen=True)
class DeviceTreeSummary:
    """What a kernel booted with a device tree is told: /chosen, its memory, what is reserved."""

    root_cells: tuple[int, int]
    chosen: tuple[tuple[str, ChosenValue], ...]
    memory: tuple[tuple[str, tuple[Range, ...]], ...]  # node path, its reg
    reserved: tuple[tuple[str, Range], ...]  # "/memreserve/" or the /reserved-memory node

    def to_json(self) -> dict[str, object]:
        def value(item: ChosenValue) -> object:
            return [piece.to_json() for piece in item] if isinstance(item, tuple) else item

        return {
            "root_cells": list(self.root_cells),
            "chosen": {name: value(item) for name, item in self.chosen},
            "memory": [
                {"node": node, "ranges": [piece.to_json() for piece in ranges]}
                for node, ranges in self.memory
            ],
            "reserved": [{"source": source, **piece.to_json()} for source, piece in self.reserved],
        }


def describe_device_tree(tree: DeviceTree) -> DeviceTreeSummary:
    """The `DeviceTreeSummary` of `tree`.

    /chosen values as dtc would write them, except the ranges and numbers a
    crash boot sets, which are decoded, and a single string, shown as itself.

    >>> root = Node("", (("#address-cells", b"\\0\\0\\0\\1"), ("#size-cells", b"\\0\\0\\0\\1")),
    ...     (Node("memory@40000000", (("device_type", b"memory\\0"),
    ...                              ("reg", bytes.fromhex("4000000040000000")))),))
    >>> describe_device_tree(DeviceTree(root)).memory
    (('/memory@40000000', (Range(start=1073741824, end=2147483648),)),)
    """
    chosen = tree.node(CHOSEN) or Node("chosen")
    return DeviceTreeSummary(
        root_cells=tree.root_cells(),
        chosen=tuple((name, _chosen_value(tree, name, value)) for name, value in chosen.properties),
        memory=tuple(
            (f"/{node.name}", _ranges(tree, node.property("reg") or b""))
            for node in tree.root.children
            if node.property("device_type") == b"memory\0" or node.name.startswith("memory@")
        ),
        reserved=_reserved(tree),
    )


def _ranges(tree: DeviceTree, value: bytes) -> tuple[Range, ...]:
    return tuple(Range(start, start + size) for start, size in tree.decode_ranges(value))


def _chosen_value(tree: DeviceTree, name: str, value: bytes) -> ChosenValue:
    if name in _RANGE_PROPERTIES:
        return _ranges(tree, value)
    if name in _NUMBER_PROPERTIES and len(value) in (4, 8):  # a u32 (QEMU) or a u64
        return int.from_bytes(value, "big")
    shown = format_value(value)
    if shown.count('"') == 2 and shown.startswith('"'):
        return shown[1:-1]
    return shown


def _reserved(tree: DeviceTree) -> tuple[tuple[str, Range], ...]:
    """The /memreserve/ entries and the /reserved-memory children with a `reg` (whose
    cells are the root's, as the reserved-memory binding asks)."""
    found = [("/memreserve/", Range(entry.address, entry.address + entry.size))
             for entry in tree.reservations]  # fmt: skip
    reserved = tree.node("/reserved-memory")
    for child in reserved.children if reserved is not None else ():
        reg = child.property("reg")
        if reg is not None:
            found += [(f"/reserved-memory/{child.name}", piece) for piece in _ranges(tree, reg)]
    return tuple(found)


def firmware_reserved(booted: bytes, source: str) -> tuple[Range, ...]:
    """What the firmware kept for itself in the DTB `booted`: its /memreserve/ entries and the
    /reserved-memory children not marked `reusable`, in address order.

    Such a range can lie inside iomem's "System RAM" while the kernel may not
    touch it: OpenSBI's mmode_resv0 on RISC-V is PMP-protected, and reading it
    through /proc/vmcore fails. The kernel never allocates from these ranges,
    so a dump loses nothing without them. A `reusable` one (a CMA pool) is RAM
    the kernel allocates from: it stays. Errors name `source`.

    >>> root = Node("", (("#address-cells", b"\\0\\0\\0\\1"), ("#size-cells", b"\\0\\0\\0\\1")),
    ...     (Node("reserved-memory", (), (
    ...         Node("mmode_resv0@80000000", (("reg", bytes.fromhex("8000000000080000")),)),
    ...         Node("cma", (("reusable", b""), ("reg", bytes.fromhex("9000000001000000")))))),))
    >>> firmware_reserved(DeviceTree(root).to_bytes(), "fdt")
    (Range(start=2147483648, end=2148007936),)
    """
    tree = parse_fdt(booted, source, LayoutError)
    found = [Range(entry.address, entry.address + entry.size) for entry in tree.reservations]
    reserved = tree.node("/reserved-memory")
    for child in reserved.children if reserved is not None else ():
        reg = child.property("reg")
        if reg is not None and child.property("reusable") is None:
            try:
                found += _ranges(tree, reg)
            except FormatError as error:
                raise LayoutError(f"{source}: /reserved-memory/{child.name}: {error}") from None
    return tuple(sorted(piece for piece in found if piece.size))
