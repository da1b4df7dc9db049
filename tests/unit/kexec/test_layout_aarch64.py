"""Offline `kdump-build layout` for arm64 on captured guests, checked with independent tools.

Two guest shapes captured in QEMU virt with Debian 12's arm64 kernel
(tests/data/sysfs/qemu-arm64-*): 1 GiB / 1 CPU with `crashkernel=192M`, and
4 GiB / 4 CPUs with `crashkernel=256M,high crashkernel=64M,low` (two crash
ranges). The build is recipes/qemu-arm64.toml. The oracles: fdtget and dtc
read the generated device tree, readelf the ELF core header, hashlib the
purgatory's digest, kexec-tools' `kexec -p -d` in the same guests the
placement, the guest's own VMCOREINFO note the kernel addresses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.kexec.purgatory.aarch64 import PURGATORY
from builder.kexec.purgatory.regions import regions_digest
from tests.support.layouts import (
    Planned,
    assert_device_tree_required,
    assert_reproducible,
    build_recipe,
    check_capture_chosen,
    kexec_tools_segments,
    offline_layout,
    readelf_segments,
    vmcoreinfo_items,
)
from tests.support.paths import DATA, REPO

RECIPE = REPO / "recipes" / "qemu-arm64.toml"
KIMAGE_VADDR = 0xFFFF_8000_0800_0000  # 48-bit VA: where _text sits before KASLR moves it
PAGE_OFFSET_48 = 0xFFFF_0000_0000_0000


@dataclass(frozen=True)
class Shape:
    name: str
    cpus: int
    crash: tuple[tuple[int, int], ...]  # (start, size), main range first
    ram: tuple[tuple[int, int], ...]  # System RAM minus the crash ranges (start, end)


SHAPES = (
    Shape("qemu-arm64-1g-1cpu-192m", 1, ((0x6EC00000, 0xC000000),),
          ((0x40000000, 0x6EC00000), (0x7AC00000, 0x80000000))),
    Shape("qemu-arm64-4g-4cpu-256m-high-64m-low", 4,
          ((0x12B600000, 0x10000000), (0xF8000000, 0x4000000)),
          ((0x40000000, 0xF8000000), (0xFC000000, 0x12B600000), (0x13B600000, 0x140000000))),
)  # fmt: skip


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_recipe(RECIPE, tmp_path_factory.mktemp("arm64-build") / "out")


@pytest.fixture(scope="module", params=SHAPES, ids=lambda shape: shape.name)
def shape(request: pytest.FixtureRequest) -> Shape:
    chosen: Shape = request.param
    return chosen


@pytest.fixture(scope="module")
def planned(build: Path, shape: Shape, tmp_path_factory: pytest.TempPathFactory) -> Planned:
    """`kdump-build layout` of the build for one captured guest (once per shape)."""
    return offline_layout(build, shape.name, tmp_path_factory.mktemp("layout"))


def test_device_tree_read_by_fdtget_and_dtc(
    build: Path, shape: Shape, planned: Planned, tmp_path: Path
) -> None:
    check_capture_chosen(build, planned, shape.crash, tmp_path)


def _kexec_tools_segments(shape: Shape) -> list[tuple[int, int]]:
    return kexec_tools_segments((DATA / "arm64-oracle" / shape.name / "kexec-p-d.txt").read_text())


def test_placement_is_kexec_tools_and_the_digest_holds(shape: Shape, planned: Planned) -> None:
    kernel, initrd, _dtb, _purgatory, elfcorehdr = _kexec_tools_segments(shape)
    main_start = shape.crash[0][0]
    assert planned.document["crash_region"]["start"] == main_start  # type: ignore[index]
    assert planned.segment("kernel")[:2] == kernel  # region base, image_size
    assert planned.segment("initrd")[0] == initrd[0]  # right after image_size
    assert planned.segment("elfcorehdr")[:2] == elfcorehdr  # the last page of the region
    purgatory_mem, _, purgatory = planned.segment("purgatory")
    assert planned.document["entry"] == purgatory_mem
    covered = [planned.segment(name) for name in ("kernel", "initrd", "dtb", "elfcorehdr")]
    digest = hashlib.sha256(b"".join(data + bytes(memsz - len(data)) for _, memsz, data in covered))
    loaded = PURGATORY.load(purgatory_mem)
    offset = loaded.symbol("purgatory_sha256_digest")[0] - purgatory_mem
    assert purgatory[offset : offset + 32] == digest.digest()
    assert digest.digest() == regions_digest([(mem, data, memsz) for mem, memsz, data in covered])
    assert planned.document["flags"] == 0xB70001  # KEXEC_ON_CRASH | KEXEC_ARCH_AARCH64


def test_elf_core_header_read_by_readelf(shape: Shape, planned: Planned, tmp_path: Path) -> None:
    rows = readelf_segments(planned.segment("elfcorehdr")[2], tmp_path)
    notes = [row for row in rows if row[0] == "NOTE"]
    loads = [
        (int(row[2], 16), int(row[3], 16), int(row[5], 16)) for row in rows if row[0] == "LOAD"
    ]
    assert len(notes) == shape.cpus + 1  # one per possible CPU, then vmcoreinfo
    oracle = vmcoreinfo_items(DATA / "arm64-oracle" / shape.name / "vmcoreinfo.txt")
    text_vaddr, text_paddr, _ = loads[0]
    assert text_vaddr == KIMAGE_VADDR + int(oracle["KERNELOFFSET"], 16)
    assert text_vaddr - text_paddr == int(oracle["NUMBER(kimage_voffset)"], 16)
    linear = PAGE_OFFSET_48 - int(oracle["NUMBER(PHYS_OFFSET)"], 16)
    assert [(paddr, paddr + size) for _, paddr, size in loads[1:]] == list(shape.ram)
    assert all(vaddr == linear + paddr for vaddr, paddr, _ in loads[1:])


def test_layout_is_reproducible(
    build: Path, shape: Shape, planned: Planned, tmp_path: Path
) -> None:
    assert_reproducible(build, shape.name, planned, tmp_path)


def test_without_the_device_tree_the_layout_says_what_is_missing(
    build: Path, tmp_path: Path
) -> None:
    assert_device_tree_required(build, SHAPES[0].name, tmp_path, "arm64")
