"""Tests for builder/kexec/crashinfo.py: what the main kernel says about its crash data.

The sysfs values were captured in a QEMU guest (tests/data/sysfs/, made by
`kdump-build capture-sysfs`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.arch import Arch, KernelTextLookup
from builder.errors import LayoutError
from builder.kexec.crashinfo import (
    CpuNote,
    CrashInfo,
    KernelText,
    capture_crash_info,
    parse_cpu_list,
    parse_kcore_headers,
    read_crash_info,
    read_device_tree,
)
from builder.kexec.layout.inputs import read_crash_info_for
from builder.kexec.memmap import parse_iomem
from tests.support.paths import REPO
from tests.support.synthetic import elf64

SYSFS = REPO / "tests" / "data" / "sysfs" / "qemu-1g-crashkernel-192m"


def _info() -> CrashInfo:
    iomem = parse_iomem((SYSFS / "proc" / "iomem").read_text())
    return read_crash_info_for(SYSFS, iomem, Arch.X86_64)


def test_read_crash_info_from_captured_guest() -> None:
    info = _info()
    assert [note.cpu for note in info.cpu_notes] == [0, 1]
    assert all(note.size == 368 for note in info.cpu_notes)
    assert info.vmcoreinfo_size == 0x1024
    assert info.kernel_text is not None
    assert 0xFFFF_FFFF_8000_0000 <= info.kernel_text.vaddr < 0xFFFF_FFFF_C000_0000
    iomem = parse_iomem((SYSFS / "proc" / "iomem").read_text())
    code = [r.range.start for r, _ in iomem.walk() if r.name == "Kernel code"]
    assert info.kernel_text.paddr == code[0]
    assert info.acpi_rsdp == 0xF59C0  # SeaBIOS puts the RSDP in the F segment


def test_parse_cpu_list_errors() -> None:
    assert parse_cpu_list("0\n", "x") == (0,)
    with pytest.raises(LayoutError, match="possible: not a CPU list"):
        parse_cpu_list("zero", "possible")
    with pytest.raises(LayoutError, match="bad CPU range '3-1'"):
        parse_cpu_list("3-1", "possible")


def test_read_crash_info_missing_file_names_it(tmp_path: Path) -> None:
    shutil.copytree(SYSFS, tmp_path / "sysfs")
    (tmp_path / "sysfs" / "sys" / "kernel" / "vmcoreinfo").unlink()
    with pytest.raises(LayoutError, match=r"sys/kernel/vmcoreinfo: No such file"):
        read_crash_info(tmp_path / "sysfs", Arch.X86_64)


def test_truncated_kcore_is_refused(tmp_path: Path) -> None:
    shutil.copytree(SYSFS, tmp_path / "sysfs")
    kcore = tmp_path / "sysfs" / "proc" / "kcore"
    kcore.write_bytes(kcore.read_bytes()[:100])
    with pytest.raises(LayoutError, match=r"kcore: .*truncated"):
        read_crash_info(tmp_path / "sysfs", Arch.X86_64)


def test_crash_info_round_trip_from_fields() -> None:
    info = CrashInfo((CpuNote(0, 0x1000, 368),), 0x2000, 0x1024, KernelText(1, 2, 3), None, 0)
    assert info.to_json()["kernel_text"] == {"vaddr": 1, "paddr": 2, "size": 3}


def test_capture_copies_what_a_layout_reads(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    capture_crash_info(SYSFS, copy)
    assert read_crash_info(copy, Arch.X86_64) == read_crash_info(SYSFS, Arch.X86_64)
    assert (copy / "proc" / "iomem").read_bytes() == (SYSFS / "proc" / "iomem").read_bytes()


# ------------------------------------------------------------------ arm64

ARM64_SHAPES = ("qemu-arm64-1g-1cpu-192m", "qemu-arm64-4g-4cpu-256m-high-64m-low")
KIMAGE_VADDR = 0xFFFF_8000_0800_0000  # arm64, 48-bit VA: MODULES_END, where _text sits before KASLR
PAGE_OFFSET_48 = 0xFFFF_0000_0000_0000  # -(1 << 48)


def _vmcoreinfo(shape: str) -> dict[str, int]:
    """The VMCOREINFO note the guest itself read from /proc/kcore: the oracle here."""
    text = (REPO / "tests" / "data" / "arm64-oracle" / shape / "vmcoreinfo.txt").read_text()
    pairs = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {
        "kimage_voffset": int(pairs["NUMBER(kimage_voffset)"], 16),
        "kaslr_offset": int(pairs["KERNELOFFSET"], 16),
        "phys_offset": int(pairs["NUMBER(PHYS_OFFSET)"], 16),
    }


@pytest.mark.parametrize("shape", ARM64_SHAPES)
def test_arm64_text_and_linear_map_come_from_kcore_alone(shape: str) -> None:
    root = REPO / "tests" / "data" / "sysfs" / shape
    info = read_crash_info(root, Arch.AARCH64)
    oracle = _vmcoreinfo(shape)
    text = info.kernel_text
    assert text is not None and info.page_offset is not None
    assert text.vaddr == KIMAGE_VADDR + oracle["kaslr_offset"]  # _text under KASLR
    assert text.vaddr - text.paddr == oracle["kimage_voffset"]
    assert info.page_offset == PAGE_OFFSET_48 - oracle["phys_offset"]
    # kallsyms only has _stext, 64 KiB (the Image header page) above _text.
    stext = int(
        (REPO / "tests/data/arm64-oracle" / shape / "kallsyms-text.txt").read_text().split()[0], 16
    )
    assert stext - text.vaddr == 0x10000
    # The x86 window rule finds nothing on arm64: why the lookup is per architecture.
    assert parse_kcore_headers((root / "proc/kcore").read_bytes(), "kcore", (0, 1))[0] is None


def _kcore(*loads: tuple[int, int]) -> bytes:
    """A kcore-like ELF: PT_LOADs at (vaddr, paddr), plus one without a physical address."""
    no_paddr = (0xFFFF_8000_0000_0000, (1 << 64) - 1, 0, 0x1000, 0x1000)
    segments = tuple((vaddr, paddr, 0, 0x1000, 0x1000) for vaddr, paddr in loads)
    return elf64(machine=183, elf_type=4, segments=(no_paddr, *segments))


def test_arm64_linear_map_must_agree() -> None:
    above = KernelTextLookup.ABOVE_LINEAR_MAP
    good = _kcore((0xFFFF_0000_0000_0000, 0x4000_0000), (0xFFFF_A437_EDE0_0000, 0x4020_0000))
    text, page_offset = parse_kcore_headers(good, "kcore", None, above)
    assert text == KernelText(0xFFFF_A437_EDE0_0000, 0x4020_0000, 0x1000)
    assert page_offset == 0xFFFE_FFFF_C000_0000
    bad = _kcore((0xFFFF_0000_0000_0000, 0x4000_0000), (0xFFFF_0000_1000_0000, 0x9000_0000),
                 (0xFFFF_8000_0800_0000, 0x4020_0000))  # fmt: skip
    with pytest.raises(LayoutError, match=r"^kcore: the linear map's PT_LOADs disagree"):
        parse_kcore_headers(bad, "kcore", None, above)
    with pytest.raises(LayoutError, match=r"^kcore: 0 PT_LOAD\(s\) with a physical address"):
        parse_kcore_headers(_kcore(), "kcore", None, above)


def test_capture_keeps_the_booted_device_tree(tmp_path: Path) -> None:
    root = REPO / "tests" / "data" / "sysfs" / ARM64_SHAPES[0]
    copy = tmp_path / "copy"
    capture_crash_info(root, copy)
    assert read_device_tree(copy) == (root / "sys/firmware/fdt").read_bytes()
    assert read_crash_info(copy, Arch.AARCH64) == read_crash_info(root, Arch.AARCH64)
    assert read_device_tree(SYSFS) is None  # x86: no device tree


def test_capture_is_a_new_directory_never_written_into_one_of_the_users(tmp_path: Path) -> None:
    from builder.atomic import MARKER
    from builder.errors import OutputError

    copy = tmp_path / "copy"
    capture_crash_info(SYSFS, copy)
    assert (copy / MARKER).is_file()
    mine = tmp_path / "mine"
    (mine / "proc").mkdir(parents=True)
    (mine / "proc" / "iomem").write_text("my notes")
    with pytest.raises(OutputError, match="holds files kdump-build did not write"):
        capture_crash_info(SYSFS, mine)
    assert (mine / "proc" / "iomem").read_text() == "my notes"


@pytest.mark.parametrize("text", ["0-", "-1", "3-1", "0-99999999", "a", ""])
def test_malformed_cpu_lists_are_refused(text: str) -> None:
    with pytest.raises(LayoutError, match="possible: "):
        parse_cpu_list(text, "possible")


@pytest.mark.parametrize(
    ("captured", "arch", "said"),
    [
        (
            "qemu-arm64-1g-1cpu-192m",
            Arch.RISCV64,
            "e_machine 183 is aarch64, the layout is for riscv64",
        ),
        (
            "qemu-riscv64-1g-1cpu-256m",
            Arch.AARCH64,
            "e_machine 243 is riscv64, the layout is for aarch64",
        ),
        (
            "qemu-1g-crashkernel-192m",
            Arch.AARCH64,
            "e_machine 62 is x86_64, the layout is for aarch64",
        ),
    ],
)
def test_a_capture_of_another_architecture_is_refused(captured: str, arch: Arch, said: str) -> None:
    """Its kcore names its machine; taking its addresses would give a layout that loads
    but whose ELF core header describes another machine's memory."""
    root = REPO / "tests" / "data" / "sysfs" / captured
    with pytest.raises(LayoutError, match=f"proc/kcore: byte 0x12: {said}"):
        read_crash_info(root, arch)
