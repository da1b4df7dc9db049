"""`crashkernel=,cma`: both loaders give the CMA ranges to the capture kernel as RAM.

The kernel reports the ranges in /sys/kernel/kexec/crash_cma_ranges (flat
`kexec_crash_cma_ranges` before 6.19); /proc/iomem still calls them System
RAM. A kexec_load loader must put them in the capture's memory map (x86: the
e820 table) and leave them out of the dump, or the capture kernel has only
the small fixed region. Captured x86 guest inputs with a CMA file added.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder.arch import Arch
from tests.conftest import run_cli
from tests.support.layouts import build_recipe
from tests.support.paths import REPO
from tests.unit.kexec.test_kdump_load import (
    DEVICE_TREE_GUESTS,
    assert_one_line,
    loader_segments,
    python_segments,
    run_loader,
)
from tests.unit.kexec.x86_layout_inputs import SYSFS

# Inside 00100000-3ffdffff System RAM, below the crash region at 33000000-3effffff.
CMA_TEXT = "1c000000-1fffffff\n24000000-2bffffff\n"
CMA = [(0x1C000000, 0x20000000), (0x24000000, 0x2C000000)]


def _with_cma(source: Path, tmp: Path, text: str, name: str = "kexec/crash_cma_ranges") -> Path:
    sysfs = tmp / "sysfs"
    shutil.copytree(source, sysfs)
    target = sysfs / "sys/kernel" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return sysfs


def _layout(outdir: Path, sysfs: Path, tmp: Path) -> dict[str, object]:
    copy = tmp / "layout"
    shutil.copytree(outdir, copy, symlinks=True)
    result = run_cli("layout", str(copy), "--iomem", str(sysfs / "proc/iomem"),
                     "--sysfs", str(sysfs))  # fmt: skip
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads((copy / "layout.json").read_text())
    return document


def _details(document: dict[str, object]) -> dict[str, list[dict[str, int]]]:
    details = document["details"]
    assert isinstance(details, dict)
    return details


@pytest.mark.parametrize("name", ["kexec/crash_cma_ranges", "kexec_crash_cma_ranges"])
def test_cma_ranges_are_capture_ram_and_not_dumped(outdir: Path, tmp_path: Path, name: str) -> None:
    sysfs = _with_cma(SYSFS, tmp_path, CMA_TEXT, name)
    details = _details(_layout(outdir, sysfs, tmp_path))
    ram = [(entry["start"], entry["end"]) for entry in details["e820"] if entry["type"] == 1]
    for piece in CMA:
        assert piece in ram, ram
    for dumped in details["dump_ranges"]:
        assert all(dumped["end"] <= start or end <= dumped["start"] for start, end in CMA)
    # Without the file the capture gets only its fixed region (what the old loader did).
    plain = _details(_layout(outdir, SYSFS, tmp_path / "plain"))
    assert not any((e["start"], e["end"]) in CMA for e in plain["e820"])


def test_c_loader_gives_the_same_cma_layout(outdir: Path, tmp_path: Path) -> None:
    sysfs = _with_cma(SYSFS, tmp_path, CMA_TEXT)
    ours = loader_segments(Arch.X86_64, outdir, sysfs / "proc/iomem", sysfs)
    assert ours == python_segments(outdir, sysfs / "proc/iomem", sysfs, tmp_path)
    # The CMA ranges changed the e820 table and the dump: boot_params and elfcorehdr differ.
    plain = loader_segments(Arch.X86_64, outdir, SYSFS / "proc/iomem", SYSFS)
    changed = {line.split()[1] for line in set(ours) - set(plain) if line.startswith("segment")}
    assert {"boot_params", "elfcorehdr"} <= changed, changed


def test_a_cma_range_outside_ram_is_refused(outdir: Path, tmp_path: Path) -> None:
    sysfs = _with_cma(SYSFS, tmp_path, "40000000-43ffffff\n")
    path = sysfs / "sys/kernel/kexec/crash_cma_ranges"
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", sysfs / "proc/iomem",
                        "--sysfs", sysfs, outdir)  # fmt: skip
    outside = "crashkernel=,cma range at 0x40000000 is not inside System RAM"
    assert_one_line(result, f"{path}: {outside}")
    copy = tmp_path / "python"
    shutil.copytree(outdir, copy, symlinks=True)
    said = run_cli("layout", str(copy), "--iomem", str(sysfs / "proc/iomem"), "--sysfs", str(sysfs))
    assert said.returncode != 0
    assert said.stderr.strip().endswith(
        f"{path}: crashkernel=,cma range 0x40000000-0x44000000 is not inside System RAM"
    ), said.stderr
    assert not (copy / "layout.json").exists()


def test_device_tree_loaders_refuse_cma(tmp_path: Path) -> None:
    arch, guest = next((a, g) for a, g in DEVICE_TREE_GUESTS if a is Arch.AARCH64)
    outdir = build_recipe(REPO / "recipes" / "qemu-arm64.toml", tmp_path / "out")
    assert "40000000-7fffffff : System RAM" in (guest / "proc/iomem").read_text()
    sysfs = _with_cma(guest, tmp_path, "48000000-4bffffff\n")
    result = run_loader(arch, "--dry-run", "--iomem", sysfs / "proc/iomem", "--sysfs", sysfs,
                        outdir)  # fmt: skip
    expected = (
        "1 crashkernel=,cma range(s): kdump-build gives them to the capture kernel through an "
        "e820 map only"
    )
    assert_one_line(result, expected)
    iomem = str(sysfs / "proc/iomem")
    said = run_cli("layout", str(outdir), "--iomem", iomem, "--sysfs", str(sysfs))
    assert said.returncode != 0 and expected in said.stderr, said.stderr
