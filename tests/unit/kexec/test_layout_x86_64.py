"""Tests for builder/kexec/layout/x86_64.py: planning, boot_params, e820, ELF core header.

Real inputs: Debian's bzImage and the default recipe's initrd, the captured
/proc/iomem samples, and sysfs values captured in a QEMU guest
(tests/data/sysfs/, made by `kdump-build capture-sysfs`). Independent
oracles: readelf for the ELF core header, hashlib for the digest the
purgatory is patched with, the setup header unpacked with struct.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

import pytest

from builder.arch import Arch, arch_info
from builder.errors import LayoutError
from builder.image.pipeline import BuildResult
from builder.kexec.layout.core import (
    KEXEC_ON_CRASH,
    KexecSegment,
    Layout,
    check_layout,
    corrupt_segment_for_testing,
)
from builder.kexec.layout.elfcore import elf_core_header
from builder.kexec.layout.x86_64 import X86_64Details, capture_e820
from builder.kexec.layout.x86_64 import (
    plan as plan_x86_64,
)
from builder.kexec.layout.zeropage import E820_RAM, E820Entry
from builder.kexec.memmap import MemoryMap, Range, parse_iomem
from builder.kexec.purgatory.loader import LoadedPurgatory
from tests.unit.kexec.x86_layout_inputs import (
    MIB,
    SAMPLES,
    layout_inputs,
    memory_sample,
    sample_crash_info,
)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_layout_of_each_sample_passes_the_checks(default_build: BuildResult, sample: Path) -> None:
    memory = parse_iomem(sample.read_text(), source=sample.name)
    layout = plan_x86_64(layout_inputs(default_build, memory, sample_crash_info()))
    check_layout(layout)
    region = memory.crash_region()
    assert layout.crash_region == region
    assert [s.name for s in layout.segments] == [
        "kernel", "initrd", "boot_params", "cmdline", "elfcorehdr", "purgatory",
    ]  # fmt: skip
    assert layout.flags == KEXEC_ON_CRASH | (62 << 16)  # EM_X86_64 in the high 16 bits
    assert layout.flags == KEXEC_ON_CRASH | arch_info(Arch.X86_64).kexec_arch
    kernel = layout.segment("kernel")
    header = default_build.kernel.bzimage
    assert header is not None
    assert kernel.mem % header.kernel_alignment == 0
    assert kernel.mem >= max(MIB, header.pref_address or 0)
    assert kernel.memsz >= (header.init_size or 0)
    assert kernel.data == default_build.kernel_bytes[header.kernel_offset :]
    purgatory = layout.segment("purgatory")
    assert purgatory.range.contains_address(layout.entry)


def test_crash_region_above_4g_uses_ext_fields(default_build: BuildResult) -> None:
    memory = memory_sample("server-16g-crashkernel-512m-high.txt")
    assert memory.crash_region().start >= 1 << 32
    assert memory.crash_low_region() is not None
    layout = plan_x86_64(layout_inputs(default_build, memory, sample_crash_info()))
    params = layout.segment("boot_params").data
    initrd = layout.segment("initrd")
    cmdline = layout.segment("cmdline")
    low, high = (
        struct.unpack_from("<II", params, 0x218)[0],
        struct.unpack_from("<I", params, 0xC0)[0],
    )
    assert (high << 32) | low == initrd.mem
    size = (
        struct.unpack_from("<I", params, 0x21C)[0] | struct.unpack_from("<I", params, 0xC4)[0] << 32
    )
    assert size == len(default_build.initrd)
    pointer = (
        struct.unpack_from("<I", params, 0x228)[0] | struct.unpack_from("<I", params, 0xC8)[0] << 32
    )
    assert pointer == cmdline.mem
    # The low crash range is RAM for the capture kernel.
    low_range = memory.crash_low_region()
    assert low_range is not None
    assert E820Entry(low_range.start, low_range.end, E820_RAM) in _details(layout).e820


def _fragmented_firmware_map(count: int) -> MemoryMap:
    """1 GiB of RAM with a crash region, and `count` small reserved ranges above it."""
    lines = ["00001000-0009fbff : System RAM", "00100000-3fffffff : System RAM",
             "  30000000-3bffffff : Crash kernel"]  # fmt: skip
    for index in range(count):
        start = 0x4000_0000 + index * 0x2000
        lines.append(f"{start:08x}-{start + 0xFFF:08x} : Reserved")
    return parse_iomem("\n".join(lines) + "\n")


def test_more_than_128_e820_entries_go_to_setup_data(default_build: BuildResult) -> None:
    # The capture map keeps every firmware range of the main map: past 125 of
    # them it no longer fits the zero page's 128 slots.
    memory = _fragmented_firmware_map(200)
    layout = plan_x86_64(layout_inputs(default_build, memory, sample_crash_info()))
    entries = _details(layout).e820
    assert len(entries) > 128
    segment = layout.segment("boot_params")
    params = segment.data
    assert params[0x1E8] == 128
    (pointer,) = struct.unpack_from("<Q", params, 0x250)
    assert pointer == segment.mem + 4096
    following, kind, length = struct.unpack_from("<QII", params, 4096)
    assert (following, kind) == (0, 1)  # the last node, SETUP_E820_EXT
    assert length == (len(entries) - 128) * 20
    decoded = [struct.unpack_from("<QQI", params, 0x2D0 + 20 * i) for i in range(128)]
    decoded += [struct.unpack_from("<QQI", params, 4096 + 16 + 20 * i)
                for i in range(len(entries) - 128)]  # fmt: skip
    assert decoded == [(e.start, e.end - e.start, e.type) for e in entries]
    assert segment.memsz >= len(params)


def test_boot_params_header_and_pointers(default_build: BuildResult) -> None:
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    info = sample_crash_info()
    layout = plan_x86_64(layout_inputs(default_build, memory, info))
    params = layout.segment("boot_params").data
    kernel = default_build.kernel_bytes
    end = 0x202 + kernel[0x201]
    # The setup header is copied except the fields a loader fills in.
    filled = {0x210, 0x211, *range(0x218, 0x220), *range(0x228, 0x22C)}
    for offset in range(0x1F1, end):
        if offset not in filled:
            assert params[offset] == kernel[offset], hex(offset)
    assert params[0x202:0x206] == b"HdrS"
    assert params[0x210] == 0xD0
    assert struct.unpack_from("<Q", params, 0x070)[0] == info.acpi_rsdp
    assert params[0x1EF] == 0  # sentinel: the kernel would wipe ext_ fields otherwise
    cmdline = layout.segment("cmdline")
    text = cmdline.data.rstrip(b"\0").decode()
    elfcorehdr = layout.segment("elfcorehdr").mem
    assert text == f"{default_build.cmdline} elfcorehdr={elfcorehdr >> 10}K"
    assert cmdline.data.endswith(b"\0")


def test_capture_e820_gives_crash_region_minus_elfcorehdr() -> None:
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    region = memory.crash_region()
    hole = Range(region.end - 0x1000, region.end)
    entries = capture_e820(memory, [hole])
    ram = [(e.start, e.end) for e in entries if e.type == E820_RAM]
    assert ram == [(0x1000, 0x9FC00), (region.start, hole.start)]
    # ACPI/NVS/reserved ranges kept, nothing of the main kernel's RAM outside the region.
    assert E820Entry(0x3FFDF000, 0x40000000, 2) in entries
    assert all(not (e.type == E820_RAM and 0x100000 <= e.start < region.start) for e in entries)


def test_command_line_too_long_names_the_segment(default_build: BuildResult) -> None:
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    with pytest.raises(
        LayoutError,
        match=r"segment 'cmdline': 5\d\d\d bytes, the kernel accepts 2047 \(cmdline_size\)",
    ):
        plan_x86_64(layout_inputs(default_build, memory, None, cmdline="x" * 5000))


def test_crash_region_too_small_names_the_segment(default_build: BuildResult) -> None:
    memory = parse_iomem(
        "00001000-0009fbff : System RAM\n00100000-3fffffff : System RAM\n"
        "  3f000000-3fffffff : Crash kernel\n"
    )
    # The kernel needs init_size (0x260 in the setup header, Documentation/arch/x86/
    # boot.rst) rounded up to a page, whatever Debian's current kernel makes that.
    (init_size,) = struct.unpack_from("<I", default_build.kernel_bytes, 0x260)
    needed = -(-init_size // 4096) * 4096
    with pytest.raises(LayoutError, match=f"segment 'kernel': no hole of {needed:#x} bytes"):
        plan_x86_64(layout_inputs(default_build, memory, None))


def test_no_crash_region() -> None:
    memory = parse_iomem("00100000-3fffffff : System RAM\n")
    with pytest.raises(LayoutError, match="no 'Crash kernel' range"):
        memory.crash_region()


def _readelf(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "elfcorehdr"
    path.write_bytes(data)
    result = subprocess.run(
        ["readelf", "-W", "-h", "-l", str(path)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_elf_core_header_read_by_readelf(default_build: BuildResult, tmp_path: Path) -> None:
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    info = sample_crash_info()
    layout = plan_x86_64(layout_inputs(default_build, memory, info))
    listing = _readelf(layout.segment("elfcorehdr").data, tmp_path)
    assert "CORE (Core file)" in listing
    assert "Advanced Micro Devices X86-64" in listing
    notes = [line.split() for line in listing.splitlines() if line.strip().startswith("NOTE")]
    loads = [line.split() for line in listing.splitlines() if line.strip().startswith("LOAD")]
    assert len(notes) == len(info.cpu_notes) + 1
    assert [int(n[1], 16) for n in notes] == [
        *(note.address for note in info.cpu_notes), info.vmcoreinfo_address,
    ]  # fmt: skip
    text = info.kernel_text
    assert text is not None
    assert (int(loads[0][2], 16), int(loads[0][3], 16), int(loads[0][5], 16)) == (
        text.vaddr, text.paddr, text.size,
    )  # fmt: skip
    ram = [(int(load[3], 16), int(load[3], 16) + int(load[5], 16)) for load in loads[1:]]
    region = memory.crash_region()
    assert ram == [(0x100000, region.start), (region.end, 0x3FFDF000)]
    # Direct-map virtual addresses follow the captured page_offset.
    assert info.page_offset is not None
    assert int(loads[1][2], 16) == info.page_offset + 0x100000


def test_elf_core_header_with_backup_points_at_the_copy(default_build: BuildResult) -> None:
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(layout_inputs(default_build, memory, sample_crash_info(), backup=True))
    backup = layout.segment("backup")
    assert backup.memsz == 640 << 10 and backup.bufsz == 0
    ranges = _details(layout).dump_ranges
    assert ranges[0].to_json() == {"start": 0x1000, "end": 0x9FC00, "offset": backup.mem + 0x1000}
    assert all(not Range(e.start, e.end).overlaps(backup.range)
               for e in _details(layout).e820 if e.type == E820_RAM)  # fmt: skip


def test_elf_core_header_without_info_lists_only_ram() -> None:
    ram = [Range(0x100000, 0x200000), Range(0x300000, 0x400000)]
    header = elf_core_header(None, ram, machine=arch_info(Arch.X86_64).elf_machine)
    assert struct.unpack_from("<H", header, 0x38)[0] == 2


@pytest.mark.parametrize("backup", [False, True])
def test_purgatory_digest_covers_every_other_segment(
    default_build: BuildResult, backup: bool
) -> None:
    """The backup segment too, as the zeros it holds until the purgatory has checked."""
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(layout_inputs(default_build, memory, sample_crash_info(), backup=backup))
    assert ("backup" in [s.name for s in layout.segments]) is backup
    purgatory_segment = layout.segment("purgatory")
    others = [s for s in layout.segments if s.name != "purgatory"]
    # In memory each segment is its bytes, then zeros up to memsz (hashlib, not our digest code).
    expected = hashlib.sha256(b"".join(s.data + bytes(s.memsz - s.bufsz) for s in others)).digest()
    loaded = _as_loaded(purgatory_segment)
    assert loaded.read("purgatory_sha256_digest") == expected
    table = loaded.read("purgatory_sha256_regions")
    regions = [struct.unpack_from("<QQ", table, 16 * i) for i in range(len(others))]
    assert regions == [(s.mem, s.memsz) for s in others]
    registers = loaded.read("purgatory_entry_regs")
    rsi = struct.unpack_from("<Q", registers, 4 * 8)[0]
    rip = struct.unpack_from("<Q", registers, 16 * 8)[0]
    assert rsi == layout.segment("boot_params").mem
    assert rip == layout.segment("kernel").mem + 0x200


def _as_loaded(segment: KexecSegment) -> LoadedPurgatory:
    from builder.kexec.purgatory.x86_64 import load_x86_64_purgatory

    fresh = load_x86_64_purgatory(segment.mem)
    return LoadedPurgatory(fresh.load_address, segment.data, fresh.memsz, fresh.alignment,
                           fresh.entry, fresh.symbols)  # fmt: skip


def test_corrupting_for_testing_changes_one_byte_after_the_digest(
    default_build: BuildResult,
) -> None:
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(layout_inputs(default_build, memory, None))
    broken = corrupt_segment_for_testing(layout, "initrd")
    before, after = layout.segment("initrd").data, broken.segment("initrd").data
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 1
    assert broken.segment("purgatory").data == layout.segment("purgatory").data
    # The backup segment is loaded as zeros: its corruption is one byte that is not.
    with_backup = plan_x86_64(layout_inputs(default_build, memory, None, backup=True))
    assert corrupt_segment_for_testing(with_backup, "backup").segment("backup").data == b"\xff"
    with pytest.raises(LayoutError, match="no segment named 'nope'"):
        corrupt_segment_for_testing(layout, "nope")


def _details(layout: Layout) -> X86_64Details:
    assert isinstance(layout.details, X86_64Details)
    return layout.details


def test_details_keep_the_layout_json_keys(default_build: BuildResult) -> None:
    layout = plan_x86_64(
        layout_inputs(default_build, memory_sample("qemu-q35-1g-crashkernel-192m.txt"))
    )
    assert list(layout.details.to_json()) == [
        "cmdline", "kernel_entry", "boot_params", "elfcorehdr", "backup", "e820",
        "dump_ranges", "crash_info", "kernel_image",
    ]  # fmt: skip
    assert layout.details.cmdline == layout.segment("cmdline").data.rstrip(b"\0").decode()
