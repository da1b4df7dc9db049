"""Tests for builder/kexec/crashinfo.py: what the main kernel says about its crash data.

The sysfs values were captured in a QEMU guest (tests/data/sysfs/, made by
`kdump-build capture-sysfs`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.errors import LayoutError
from builder.kexec.crashinfo import (
    CpuNote,
    CrashInfo,
    KernelText,
    capture_crash_info,
    parse_cpu_list,
    read_crash_info,
)
from builder.kexec.layout.inputs import read_crash_info_for
from builder.kexec.memmap import parse_iomem
from tests.support.paths import REPO

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
