"""Memory maps (/proc/iomem, recipe maps) and the hole allocator.

/proc/iomem format (kernel/resource.c r_show()): "%*s%0*llx-%0*llx : %s", two
spaces of indent per nesting level, inclusive end, at least 8 hex digits.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import LayoutError, RecipeError
from builder.kexec.memmap import (
    HoleAllocator,
    Kind,
    MemoryMap,
    Range,
    classify,
    find_hole,
    memory_map_from_entries,
    parse_iomem,
    subtract,
)
from tests.support.paths import DATA

M, G = 1 << 20, 1 << 30
IOMEM = DATA / "iomem"
QEMU_1G = IOMEM / "qemu-q35-1g-crashkernel-192m.txt"
SERVER_HIGH = IOMEM / "server-16g-crashkernel-512m-high.txt"
FRAGMENTED = IOMEM / "uefi-fragmented-crashkernel-256m.txt"
SAMPLES = (QEMU_1G, SERVER_HIGH, FRAGMENTED)


def load(path: Path) -> MemoryMap:
    return parse_iomem(path.read_text(), source=path.name)


# ------------------------------------------------------------------ Range and subtract


def test_range_basics() -> None:
    r = Range(0x1000, 0x3000)
    assert (r.size, r.last, str(r)) == (0x2000, 0x2FFF, "0x1000-0x3000")
    assert r.contains(Range(0x1000, 0x2000)) and not r.contains(Range(0x2000, 0x4000))
    assert r.overlaps(Range(0x2FFF, 0x4000)) and not r.overlaps(Range(0x3000, 0x4000))
    assert r.contains_address(0x2FFF) and not r.contains_address(0x3000)


def test_range_rejects_inverted() -> None:
    with pytest.raises(LayoutError):
        Range(0x2000, 0x1000)


def test_subtract() -> None:
    ranges = [Range(0, 0x100), Range(0x200, 0x300)]
    holes = [Range(0x80, 0x220), Range(0x2F0, 0x400)]
    assert subtract(ranges, holes) == (Range(0, 0x80), Range(0x220, 0x2F0))
    assert subtract(ranges, [Range(0, 0x1000)]) == ()
    assert subtract(ranges, []) == tuple(ranges)


# ------------------------------------------------------------------ parsing /proc/iomem


def test_inclusive_end_becomes_exclusive() -> None:
    memory = parse_iomem("00001000-0009fbff : System RAM\n")
    assert memory.system_ram() == (Range(0x1000, 0x9FC00),)


def test_qemu_sample() -> None:
    memory = load(QEMU_1G)
    assert memory.system_ram() == (Range(0x1000, 0x9FC00), Range(0x100000, 0x3FFDF000))
    # 192M, 16M-aligned, top-down below the end of RAM (0x3ffdf000).
    assert memory.crash_region() == Range(0x33000000, 0x3F000000)
    assert memory.crash_region().size == 192 * M
    assert memory.crash_low_region() is None
    assert memory.ram_minus_crash() == (
        Range(0x1000, 0x9FC00),
        Range(0x100000, 0x33000000),
        Range(0x3F000000, 0x3FFDF000),
    )


def test_total_ram() -> None:
    memory = load(QEMU_1G)
    assert memory.total_ram == (0x9FC00 - 0x1000) + (0x3FFDF000 - 0x100000)


def test_qemu_nesting() -> None:
    memory = load(QEMU_1G)
    kernel = memory.of_kind(Kind.KERNEL)
    assert [resource.name for resource in kernel] == [
        "Kernel code",
        "Kernel rodata",
        "Kernel data",
        "Kernel bss",
    ]
    ram = next(r for r in memory.resources if r.range.start == 0x100000)
    assert all(ram.range.contains(section.range) for section in kernel)
    # Three levels: PCI Bus > device > driver.
    names = [(len(ancestors), resource.name) for resource, ancestors in memory.walk()]
    assert (2, "virtio-pci-modern") in names


def test_qemu_firmware_regions() -> None:
    regions = load(QEMU_1G).firmware_regions()
    starts = [region.range.start for region in regions]
    assert starts == [
        0x0,
        0x9FC00,
        0xF0000,
        0x3FFDF000,
        0xB0000000,
        0xFED1C000,
        0xFEFFC000,
        0xFFFC0000,
    ]
    assert {region.kind for region in regions} == {Kind.RESERVED}


def test_server_sample_high_and_low() -> None:
    memory = load(SERVER_HIGH)
    assert memory.crash_ranges() == (Range(0x4C000000, 0x5C000000), Range(0x45F000000, 0x47F000000))
    assert memory.crash_region() == Range(0x45F000000, 0x47F000000)
    assert memory.crash_region().start >= 4 * G
    assert memory.crash_low_region() == Range(0x4C000000, 0x5C000000)
    rest = memory.ram_minus_crash()
    assert not any(r.overlaps(c) for r in rest for c in memory.crash_ranges())
    assert sum(r.size for r in rest) == sum(r.size for r in memory.system_ram()) - 768 * M


def test_server_firmware_kinds() -> None:
    regions = load(SERVER_HIGH).firmware_regions()
    kinds = {region.kind for region in regions}
    assert kinds == {Kind.RESERVED, Kind.ACPI_TABLES, Kind.ACPI_NVS}
    acpi = next(region for region in regions if region.kind is Kind.ACPI_TABLES)
    assert acpi.range == Range(0x5D2E4000, 0x5D4E4000)
    # A Reserved nested in another Reserved (or in PCI MMCONFIG) is listed once.
    assert len({region.range for region in regions}) == len(regions)


def test_fragmented_sample_has_more_than_128_entries() -> None:
    memory = load(FRAGMENTED)
    regions = memory.regions()
    # More than an e820 table in boot_params holds (128): needs SETUP_E820_EXT.
    assert len(regions) > 128
    assert all(a.range.end <= b.range.start for a, b in itertools.pairwise(regions))
    assert memory.crash_region() == Range(0x40000000, 0x50000000)
    assert len(memory.system_ram()) > 64


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_samples_are_consistent(sample: Path) -> None:
    memory = load(sample)
    crash = memory.crash_region()
    assert any(ram.contains(crash) for ram in memory.system_ram())
    assert crash.start % (16 * M) == 0  # x86_64 CRASH_ALIGN
    json.dumps(memory.to_json())


def test_classify() -> None:
    assert classify("System RAM") is Kind.SYSTEM_RAM
    assert classify("Crash kernel") is Kind.CRASH_KERNEL
    assert classify("ACPI Tables") is Kind.ACPI_TABLES
    assert classify("ACPI Non-volatile Storage") is Kind.ACPI_NVS
    assert classify("Reserved") is Kind.RESERVED
    assert classify("reserved") is Kind.RESERVED
    assert classify("Kernel code") is Kind.KERNEL
    assert classify("Persistent Memory (legacy)") is Kind.PERSISTENT_MEMORY
    assert classify("PCI Bus 0000:00") is Kind.OTHER


def test_arm64_reserved_inside_ram_is_not_firmware() -> None:
    text = (
        "40000000-bfffffff : System RAM\n"
        "  40210000-4121ffff : Kernel code\n"
        "  48000000-483fffff : reserved\n"
        "  b0000000-bfffffff : Crash kernel\n"
    )
    memory = parse_iomem(text)
    assert memory.firmware_regions() == ()
    assert memory.crash_region() == Range(0xB0000000, 0xC0000000)


def test_empty_iomem() -> None:
    memory = parse_iomem("")
    assert memory.resources == ()
    with pytest.raises(LayoutError, match="no 'Crash kernel'"):
        memory.crash_region()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("00100000-3fffffff System RAM\n", "line 1"),
        ("00100000 : System RAM\n", "line 1"),
        ("00000000-00000fff : Reserved\nzz-yy : x\n", "line 2"),
        ("3fffffff-00100000 : System RAM\n", "bad range"),
        ("00100000-3fffffff : System RAM\n  40000000-4fffffff : Crash kernel\n", "outside"),
        ("00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n", "root"),
    ],
)
def test_iomem_errors(text: str, match: str) -> None:
    with pytest.raises(LayoutError, match=match):
        parse_iomem(text)


# ------------------------------------------------------------------ recipe memory maps


def test_recipe_map_nests_crash_into_ram() -> None:
    memory = memory_map_from_entries(
        [
            (0x30000000, 0x3C000000, "crash"),
            (0x100000, 0x40000000, "ram"),
            (0x0, 0x1000, "reserved"),
            (0x40000000, 0x40100000, "ACPI Tables"),
            (0x40100000, 0x40200000, "nvs"),
        ]
    )
    assert memory.crash_region() == Range(0x30000000, 0x3C000000)
    assert memory.system_ram() == (Range(0x100000, 0x40000000),)
    assert [region.kind for region in memory.firmware_regions()] == [
        Kind.RESERVED,
        Kind.ACPI_TABLES,
        Kind.ACPI_NVS,
    ]


def test_recipe_map_round_trips_an_iomem_sample() -> None:
    memory = load(SERVER_HIGH)
    entries = [(r.range.start, r.range.end, r.kind.value) for r in memory.regions()]
    entries += [(r.start, r.end, "crash") for r in memory.crash_ranges()]
    rebuilt = memory_map_from_entries(entries)
    assert rebuilt.regions() == memory.regions()
    assert rebuilt.crash_ranges() == memory.crash_ranges()


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([(0x0, 0x2000, "ram"), (0x1000, 0x3000, "reserved")], "partly overlaps"),
        ([(0x0, 0x1000, "dram")], "not one of"),
        ([(0x2000, 0x1000, "ram")], "start < end"),
        ([(0x0, 0x0, "ram")], "start < end"),
        ([(0x0, 0x1000)], "expected"),
        ([("0", 0x1000, "ram")], "expected"),
    ],
)
def test_recipe_map_errors(entries: list[tuple[object, ...]], match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        memory_map_from_entries(entries)  # type: ignore[arg-type]


# ------------------------------------------------------------------ hole allocator

REGION = Range(0x1000, 0x3000)


@pytest.mark.parametrize("top_down", [True, False])
def test_exact_fit(top_down: bool) -> None:
    assert find_hole(REGION, 0x2000, top_down=top_down) == REGION


def test_one_byte_too_big() -> None:
    with pytest.raises(LayoutError, match="no hole of 0x2001"):
        find_hole(REGION, 0x2001)


def test_alignment_moves_placement() -> None:
    # Top-down: highest 0x2000-aligned start with room is 0x2000.
    assert find_hole(REGION, 0x1000, align=0x2000) == Range(0x2000, 0x3000)
    assert find_hole(REGION, 0x1000, align=0x2000, top_down=False) == Range(0x2000, 0x3000)


@pytest.mark.parametrize("top_down", [True, False])
def test_alignment_pushes_out(top_down: bool) -> None:
    # 0x1800 bytes of room, but the only 0x2000-aligned start (0x2000) leaves 0x800.
    with pytest.raises(LayoutError):
        find_hole(Range(0x1000, 0x2800), 0x1000, align=0x2000, top_down=top_down)


def test_alignment_picks_the_other_region() -> None:
    regions = [Range(0x1000, 0x2800), Range(0x10000, 0x11000)]
    assert find_hole(regions, 0x1000, align=0x2000, top_down=False) == Range(0x10000, 0x11000)


def test_min_max_bounds() -> None:
    region = Range(0, 0x10000)
    assert find_hole(region, 0x1000, min_addr=0x4000, max_addr=0x8000) == Range(0x7000, 0x8000)
    assert find_hole(region, 0x1000, min_addr=0x4000, max_addr=0x8000, top_down=False) == Range(
        0x4000, 0x5000
    )
    # The window is exactly the size asked for.
    assert find_hole(region, 0x4000, min_addr=0x4000, max_addr=0x8000) == Range(0x4000, 0x8000)
    with pytest.raises(LayoutError):
        find_hole(region, 0x4001, min_addr=0x4000, max_addr=0x8000)
    with pytest.raises(LayoutError):
        find_hole(region, 0x1000, min_addr=0x10000)
    with pytest.raises(LayoutError):
        find_hole(region, 0x1000, max_addr=0xFFF)


def test_top_down_vs_bottom_up_across_regions() -> None:
    regions = [Range(0x100000, 0x200000), Range(0x800000, 0x900000), Range(0x400000, 0x500000)]
    assert find_hole(regions, 0x1000) == Range(0x8FF000, 0x900000)
    assert find_hole(regions, 0x1000, top_down=False) == Range(0x100000, 0x101000)


def test_fragmentation() -> None:
    region = Range(0, 0x10000)
    taken = [Range(start, start + 0x1000) for start in range(0x1000, 0x10000, 0x2000)]
    # Half the region is free, but no free piece is larger than one page.
    with pytest.raises(LayoutError, match="largest free piece 0x1000"):
        find_hole(region, 0x2000, taken=taken)
    assert find_hole(region, 0x1000, taken=taken) == Range(0xE000, 0xF000)
    assert find_hole(region, 0x1000, taken=taken, top_down=False) == Range(0, 0x1000)


def test_taken_outside_region_is_harmless() -> None:
    assert find_hole(REGION, 0x2000, taken=[Range(0x3000, 0x4000), Range(0, 0x1000)]) == REGION


@pytest.mark.parametrize(("size", "align"), [(0, 0x1000), (-1, 0x1000), (0x1000, 0), (0x1000, 3)])
def test_bad_requests(size: int, align: int) -> None:
    with pytest.raises(LayoutError):
        find_hole(REGION, size, align=align)


def test_allocator_places_without_overlap() -> None:
    allocator = HoleAllocator(Range(0x1000000, 0x1010000))
    placed = [allocator.allocate(0x4000) for _ in range(4)]
    assert placed == [
        Range(0x100C000, 0x1010000),
        Range(0x1008000, 0x100C000),
        Range(0x1004000, 0x1008000),
        Range(0x1000000, 0x1004000),
    ]
    with pytest.raises(LayoutError):
        allocator.allocate(0x1000)
    assert allocator.taken == tuple(sorted(placed))


def test_allocator_kexec_like_layout_in_crash_region() -> None:
    # Mirrors what the x86_64 layout does: kernel bottom-up at >= 16 MiB-ish with
    # kernel_alignment, the rest top-down, everything inside the crash region.
    crash = load(QEMU_1G).crash_region()
    allocator = HoleAllocator(crash)
    kernel = allocator.allocate(60 * M, align=2 * M, top_down=False)
    initrd = allocator.allocate(20 * M)
    boot_params = allocator.allocate(0x1000, max_addr=crash.end)
    elfcorehdr = allocator.allocate(0x2000, align=0x1000)
    placed = [kernel, initrd, boot_params, elfcorehdr]
    assert all(crash.contains(r) for r in placed)
    assert kernel.start == crash.start and kernel.start % (2 * M) == 0
    assert initrd.end == crash.end
    assert all(a.end <= b.start for a, b in itertools.pairwise(sorted(placed)))


def _brute_force(
    regions: list[Range], taken: list[Range], size: int, align: int, low: int, high: int
) -> list[int]:
    free = subtract(regions, taken)
    return [
        start
        for start in range(0, 64 * 0x100, align)
        if low <= start
        and start + size <= high
        and any(piece.contains(Range(start, start + size)) for piece in free)
    ]


spans = st.tuples(st.integers(0, 63), st.integers(1, 16)).map(
    lambda pair: Range(pair[0] * 0x100, min(64, pair[0] + pair[1]) * 0x100)
)


@settings(max_examples=300, deadline=None)
@given(
    regions=st.lists(spans, min_size=1, max_size=4),
    taken=st.lists(spans, max_size=4),
    size=st.integers(1, 8).map(lambda n: n * 0x100),
    align=st.sampled_from([0x100, 0x200, 0x400, 0x1000]),
    low=st.integers(0, 64).map(lambda n: n * 0x100),
    high=st.integers(0, 64).map(lambda n: n * 0x100),
    top_down=st.booleans(),
)
def test_allocator_matches_brute_force(
    regions: list[Range],
    taken: list[Range],
    size: int,
    align: int,
    low: int,
    high: int,
    top_down: bool,
) -> None:
    candidates = _brute_force(regions, taken, size, align, low, high)
    if not candidates:
        with pytest.raises(LayoutError):
            find_hole(
                regions,
                size,
                align=align,
                min_addr=low,
                max_addr=high,
                top_down=top_down,
                taken=taken,
            )
        return
    placed = find_hole(
        regions, size, align=align, min_addr=low, max_addr=high, top_down=top_down, taken=taken
    )
    assert placed.start == (max(candidates) if top_down else min(candidates))


# ---------------------------------------------------------------------------
# The allocator, as the layout uses it


def test_allocator_alignment_larger_than_the_free_piece() -> None:
    with pytest.raises(LayoutError, match="no hole of 0x1000 bytes aligned to 0x200000"):
        find_hole(Range(0x3000_1000, 0x3010_0000), 0x1000, align=0x20_0000)


def test_allocator_minimum_pushes_above_pref_address() -> None:
    placed = find_hole(Range(0x100000, 0x4000000), 0x100000, align=0x200000,
                       min_addr=0x1000000, top_down=False)  # fmt: skip
    assert placed == Range(0x1000000, 0x1100000)


def test_allocator_exact_fit_and_then_nothing() -> None:
    allocator = HoleAllocator(Range(0x3000_0000, 0x3000_2000))
    assert allocator.allocate(0x2000) == Range(0x3000_0000, 0x3000_2000)
    with pytest.raises(LayoutError, match="largest free piece 0x0 bytes"):
        allocator.allocate(0x1000)


def test_allocator_respects_a_4g_limit_in_a_region_across_it() -> None:
    allocator = HoleAllocator(Range(0xF000_0000, 0x1_1000_0000))
    assert allocator.allocate(0x1000, max_addr=1 << 32) == Range(0xFFFF_F000, 1 << 32)
    assert allocator.allocate(0x1000) == Range(0x1_0FFF_F000, 0x1_1000_0000)


def test_allocator_top_down_skips_taken_ranges() -> None:
    allocator = HoleAllocator(
        Range(0x3000_0000, 0x3C00_0000), taken=[Range(0x3BFF_0000, 0x3C00_0000)]
    )
    assert allocator.allocate(0x20000) == Range(0x3BFD_0000, 0x3BFF_0000)
