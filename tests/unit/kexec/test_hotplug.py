"""Tests for crash hotplug (builder/kexec/hotplug.py and the x86_64 planner's use of it).

Real inputs: Debian's bzImage and the default recipe's initrd on the captured
/proc/iomem and sysfs of a QEMU guest (tests/data/), with the crash_hotplug
files added the way a CONFIG_CRASH_HOTPLUG kernel shows them. Oracles:
hashlib for the purgatory's digest, struct for its region table, readelf
for the header.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.errors import LayoutError
from builder.image.pipeline import BuildResult
from builder.kexec.crashinfo import capture_crash_info, read_crash_info
from builder.kexec.hotplug import (
    CPU_HOTPLUG_FILE,
    CRASH_MAX_MEMORY_RANGES,
    MEMORY_HOTPLUG_FILE,
    CrashHotplug,
    header_room,
    hotplug_notice,
    read_crash_hotplug,
)
from builder.kexec.layout.core import (
    KEXEC_ON_CRASH,
    KexecSegment,
    Layout,
    LayoutOptions,
    check_rewritable_header,
)
from builder.kexec.layout.x86_64 import X86_64Details
from builder.kexec.layout.x86_64 import plan as plan_x86_64
from builder.kexec.purgatory.loader import LoadedPurgatory
from builder.kexec.purgatory.x86_64 import load_x86_64_purgatory
from builder.units import page_up
from tests.support.layouts import readelf_segments
from tests.unit.kexec.x86_layout_inputs import (
    SYSFS,
    layout_inputs,
    memory_sample,
    sample_crash_info,
)

KEXEC_UPDATE_ELFCOREHDR = 0x4  # include/uapi/linux/kexec.h
KEXEC_ARCH_X86_64 = 62 << 16
SAMPLE = "qemu-q35-1g-crashkernel-192m.txt"


def _sysfs_with(tmp_path: Path, *files: str) -> Path:
    root = tmp_path / "sysfs"
    shutil.copytree(SYSFS, root)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("0\n")  # no image loaded with the flag yet: 0, still present
    return root


def test_no_crash_hotplug_files_means_none() -> None:
    assert read_crash_hotplug(SYSFS, Arch.X86_64) is None


def test_the_files_presence_not_their_value_decides(tmp_path: Path) -> None:
    root = _sysfs_with(tmp_path, CPU_HOTPLUG_FILE)
    assert read_crash_hotplug(root, Arch.X86_64) == CrashHotplug(
        KEXEC_UPDATE_ELFCOREHDR, possible_cpus=2, memory=False
    )
    (root / MEMORY_HOTPLUG_FILE).parent.mkdir(parents=True)
    (root / MEMORY_HOTPLUG_FILE).write_text("1\n")
    hotplug = read_crash_hotplug(root, Arch.X86_64)
    assert hotplug is not None and hotplug.memory


def test_an_architecture_without_it_gets_none(tmp_path: Path) -> None:
    root = _sysfs_with(tmp_path, CPU_HOTPLUG_FILE, MEMORY_HOTPLUG_FILE)
    assert read_crash_hotplug(root, Arch.AARCH64) is None


def test_unreadable_possible_list_names_the_file(tmp_path: Path) -> None:
    root = _sysfs_with(tmp_path, CPU_HOTPLUG_FILE)
    (root / "sys/devices/system/cpu/possible").write_text("one\n")
    with pytest.raises(LayoutError, match=r"cpu/possible: not a CPU list: 'one'"):
        read_crash_hotplug(root, Arch.X86_64)


def test_header_room_is_the_kernels_count_of_program_headers() -> None:
    # arch/x86/kernel/crash.c: 2 (vmcoreinfo, kernel text) + CPUs + memory ranges.
    room = header_room(CrashHotplug(4, possible_cpus=8, memory=True), ram_ranges=3)
    assert room == 64 + 56 * (2 + 8 + CRASH_MAX_MEMORY_RANGES)
    more = header_room(CrashHotplug(4, possible_cpus=8, memory=True), ram_ranges=9000)
    assert more == 64 + 56 * (2 + 8 + 9000)
    assert header_room(CrashHotplug(4, 8, memory=False), ram_ranges=3) == 64 + 56 * 13


def test_absent_cpus_are_skipped_present_ones_read(tmp_path: Path) -> None:
    """A CPU that may be hot-added later has no cpuN directory yet: not an error."""
    root = _sysfs_with(tmp_path)
    shutil.rmtree(root / "sys/devices/system/cpu/cpu1")
    info = read_crash_info(root, Arch.X86_64)
    assert [note.cpu for note in info.cpu_notes] == [0]
    shutil.rmtree(root / "sys/devices/system/cpu/cpu0")
    with pytest.raises(LayoutError, match=r"cpu: no cpuN directory for any possible CPU \(0-1\)"):
        read_crash_info(root, Arch.X86_64)


def test_capture_keeps_the_crash_hotplug_files(tmp_path: Path) -> None:
    root = _sysfs_with(tmp_path, CPU_HOTPLUG_FILE, MEMORY_HOTPLUG_FILE)
    (root / "proc" / "iomem").write_text((SYSFS / "proc" / "iomem").read_text())
    shutil.rmtree(root / "sys/devices/system/cpu/cpu1")
    capture_crash_info(root, tmp_path / "copy")
    assert read_crash_hotplug(tmp_path / "copy", Arch.X86_64) == CrashHotplug(4, 2, memory=True)
    assert not (tmp_path / "copy" / "sys/devices/system/cpu/cpu1").exists()


def _plan(build: BuildResult, hotplug: CrashHotplug | None, *, backup: bool = False) -> Layout:
    inputs = layout_inputs(build, memory_sample(SAMPLE), sample_crash_info(), backup=backup)
    options = LayoutOptions(backup=backup, crash_hotplug=hotplug)
    return plan_x86_64(replace(inputs, options=options))


def _loaded(segment: KexecSegment) -> LoadedPurgatory:
    fresh = load_x86_64_purgatory(segment.mem)
    return LoadedPurgatory(fresh.load_address, segment.data, fresh.memsz, fresh.alignment,
                           fresh.entry, fresh.symbols)  # fmt: skip


@pytest.mark.parametrize("backup", [False, True])
def test_hotplug_layout_flag_size_and_digest(default_build: BuildResult, backup: bool) -> None:
    hotplug = CrashHotplug(KEXEC_UPDATE_ELFCOREHDR, possible_cpus=64, memory=True)
    plain = _plan(default_build, None, backup=backup)
    layout = _plan(default_build, hotplug, backup=backup)
    assert plain.flags == KEXEC_ON_CRASH | KEXEC_ARCH_X86_64
    assert layout.flags == KEXEC_ON_CRASH | KEXEC_ARCH_X86_64 | KEXEC_UPDATE_ELFCOREHDR
    header = layout.segment("elfcorehdr")
    # Our header is the same bytes; the segment has room for the kernel's largest.
    assert header.data == plain.segment("elfcorehdr").data
    assert header.memsz == page_up(64 + 56 * (2 + 64 + CRASH_MAX_MEMORY_RANGES))
    assert plain.segment("elfcorehdr").memsz == page_up(header.bufsz)
    # The purgatory verifies every segment but the header the kernel rewrites.
    verified = [s for s in layout.segments if s.name not in ("purgatory", "elfcorehdr")]
    loaded = _loaded(layout.segment("purgatory"))
    expected = hashlib.sha256(b"".join(s.data + bytes(s.memsz - s.bufsz) for s in verified))
    assert loaded.read("purgatory_sha256_digest") == expected.digest()
    table = loaded.read("purgatory_sha256_regions")
    regions = [struct.unpack_from("<QQ", table, 16 * i) for i in range(len(table) // 16)]
    assert regions[: len(verified)] == [(s.mem, s.memsz) for s in verified]
    assert set(regions[len(verified) :]) == {(0, 0)}
    # The e820 the capture kernel gets keeps the whole (larger) header out of its RAM.
    details = layout.details
    assert isinstance(details, X86_64Details)
    assert details.crash_hotplug == hotplug
    assert all(entry.end <= header.mem or entry.start >= header.mem + header.memsz
               for entry in details.e820)  # fmt: skip
    assert layout.details.to_json()["crash_hotplug"] == hotplug.to_json()
    assert "crash_hotplug" not in plain.details.to_json()


def test_hotplug_header_is_what_readelf_reads(default_build: BuildResult, tmp_path: Path) -> None:
    layout = _plan(default_build, CrashHotplug(4, possible_cpus=2, memory=False))
    rows = readelf_segments(layout.segment("elfcorehdr").data, tmp_path)
    assert [row[0] for row in rows].count("NOTE") == 3  # two CPUs and vmcoreinfo
    check_rewritable_header(layout, "elfcorehdr")


def test_a_later_segment_with_the_elf_magic_is_refused(default_build: BuildResult) -> None:
    layout = _plan(default_build, CrashHotplug(4, possible_cpus=2, memory=False))
    segments = list(layout.segments)
    purgatory = layout.segment("purgatory")
    segments[-1] = KexecSegment("purgatory", purgatory.mem, purgatory.memsz,
                                b"\x7fELF" + purgatory.data[4:])  # fmt: skip
    broken = Layout(layout.arch, layout.entry, layout.flags, layout.crash_region, tuple(segments))
    with pytest.raises(LayoutError, match="'purgatory' starts with the ELF magic after"):
        check_rewritable_header(broken, "elfcorehdr")


def test_load_says_who_keeps_the_header_right(tmp_path: Path) -> None:
    root = _sysfs_with(tmp_path)
    assert hotplug_notice(root, None) is None  # every possible CPU present, nothing to say
    shutil.rmtree(root / "sys/devices/system/cpu/cpu1")
    notice = hotplug_notice(root, None)
    assert notice is not None and notice.startswith("1 of 2 possible CPUs not present yet")
    assert notice.endswith("a udev rule reloads when a CPU or memory goes online or offline)")
    rewrites = hotplug_notice(root, CrashHotplug(4, 2, memory=True))
    assert rewrites == (
        "the kernel rewrites the ELF core header on CPU and memory hotplug (flag 0x4); "
        "the purgatory does not verify it"
    )
