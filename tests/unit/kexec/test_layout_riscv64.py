"""Offline `kdump-build layout` for riscv64 on captured guests, checked with independent tools.

Three guest shapes captured in QEMU virt (OpenSBI) with Debian 13's riscv64
kernel (tests/data/sysfs/qemu-riscv64-*): 1 GiB / 1 CPU with
`crashkernel=256M`; 4 GiB / 4 CPUs with `crashkernel=320M`; 4 GiB / 4 CPUs
with `crashkernel=256M,high` (two crash ranges: the kernel's default 128 MiB
low one). The build is recipes/qemu-riscv64.toml. The oracles: fdtget and
dtc read the generated device tree, readelf the ELF core header, hashlib the
purgatory's digest, kexec-tools 2.0.32's `kexec -p -d` (Debian's next
release, riscv64) in the same guests the placement, the guest's own
VMCOREINFO note and kallsyms the kernel addresses.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.errors import LayoutError
from builder.kexec.layout.core import LayoutInputs
from builder.kexec.layout.inputs import read_crash_info_for, read_firmware, read_iomem
from builder.kexec.layout.riscv64 import plan
from builder.kexec.purgatory.regions import regions_digest
from builder.kexec.purgatory.riscv64 import PURGATORY
from builder.units import MiB, align_up
from tests.support.layouts import (
    Planned,
    assert_device_tree_required,
    assert_reproducible,
    build_recipe,
    check_capture_chosen,
    fdtget,
    kexec_tools_segments,
    offline_layout,
    readelf_segments,
    two_cell_pairs,
    vmcoreinfo_items,
)
from tests.support.paths import DATA, REPO

RECIPE = REPO / "recipes" / "qemu-riscv64.toml"
ORACLE = DATA / "riscv64-oracle"
# OpenSBI's /reserved-memory/mmode_resv0@80000000 in every captured DTB: PMP-protected.
OPENSBI = (0x80000000, 0x80080000)


@dataclass(frozen=True)
class Shape:
    name: str
    cpus: int
    crash: tuple[tuple[int, int], ...]  # (start, size), main range first
    ram: tuple[tuple[int, int], ...]  # System RAM minus crash ranges minus OpenSBI's (start, end)


SHAPES = (
    Shape("qemu-riscv64-1g-1cpu-256m", 1, ((0xACC00000, 0x10000000),),
          ((0x80080000, 0xACC00000), (0xBCC00000, 0xC0000000))),
    Shape("qemu-riscv64-4g-4cpu-320m", 4, ((0xEC000000, 0x14000000),),
          ((0x80080000, 0xEC000000), (0x100000000, 0x180000000))),
    Shape("qemu-riscv64-4g-4cpu-256m-high-128m-low", 4,
          ((0x169C00000, 0x10000000), (0xF8000000, 0x8000000)),
          ((0x80080000, 0xF8000000), (0x100000000, 0x169C00000), (0x179C00000, 0x180000000))),
)  # fmt: skip


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """recipes/qemu-riscv64.toml built on this (amd64) host from Debian 13's packages."""
    return build_recipe(RECIPE, tmp_path_factory.mktemp("riscv64-build") / "out")


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
    # Both crash ranges, the one the segments are in first (drivers/of/fdt.c caps to rgn[0]).
    dtb = check_capture_chosen(build, planned, shape.crash, tmp_path)
    # The rest of the booted tree is kept: OpenSBI's range stays reserved for the capture kernel.
    reserved = fdtget(dtb, "reg", "-tx", node="/reserved-memory/mmode_resv0@80000000")
    assert reserved == two_cell_pairs(((OPENSBI[0], OPENSBI[1] - OPENSBI[0]),))


def test_placement_beside_kexec_tools_and_the_digest_holds(shape: Shape, planned: Planned) -> None:
    main_start, main_size = shape.crash[0]
    assert planned.document["crash_region"] == {
        "start": main_start, "end": main_start + main_size, "size": main_size
    }  # fmt: skip
    kernel_mem, kernel_memsz, _ = planned.segment("kernel")
    image_size = planned.document["details"]["kernel_image"]["image_size"]  # type: ignore[index]
    assert (kernel_mem, kernel_memsz) == (main_start, image_size)
    # The initrd after the PMD-rounded image the capture kernel reserves (arch/riscv/mm/init.c).
    assert planned.segment("initrd")[0] == align_up(main_start + image_size, 2 * MiB)
    header_mem, header_memsz, _ = planned.segment("elfcorehdr")
    assert header_mem + header_memsz == main_start + main_size  # the last page(s)
    oracle = (ORACLE / shape.name / "kexec-p-d.txt").read_text()
    if "Memory for crashkernel is not reserved" in oracle:
        # kexec-tools 2.0.32 wants exactly one "Crash kernel" range and refuses this guest.
        assert len(shape.crash) == 2
    else:
        theirs = kexec_tools_segments(oracle)
        assert theirs[0] == (kernel_mem, kernel_memsz)  # the same kernel placement
        assert theirs[-1] == (header_mem, header_memsz)  # the same ELF core header page
    purgatory_mem, _, purgatory = planned.segment("purgatory")
    assert planned.document["entry"] != kernel_mem  # our purgatory, not the kernel directly
    loaded = PURGATORY.load(purgatory_mem)
    assert planned.document["entry"] == loaded.entry
    covered = [planned.segment(name) for name in ("kernel", "initrd", "dtb", "elfcorehdr")]
    digest = hashlib.sha256(b"".join(data + bytes(memsz - len(data)) for _, memsz, data in covered))
    offset = loaded.symbol("purgatory_sha256_digest")[0] - purgatory_mem
    assert purgatory[offset : offset + 32] == digest.digest()
    assert digest.digest() == regions_digest([(mem, data, memsz) for mem, memsz, data in covered])
    registers = loaded.symbol("purgatory_entry_regs")[0] - purgatory_mem
    dtb_mem = planned.segment("dtb")[0]
    assert purgatory[registers : registers + 16] == dtb_mem.to_bytes(8, "little") + (
        kernel_mem.to_bytes(8, "little")
    )  # a1 = our DTB, then the kernel
    assert planned.document["flags"] == 0xF30001  # KEXEC_ON_CRASH | KEXEC_ARCH_RISCV (243 << 16)


def test_elf_core_header_read_by_readelf(shape: Shape, planned: Planned, tmp_path: Path) -> None:
    rows = readelf_segments(planned.segment("elfcorehdr")[2], tmp_path)
    notes = [row for row in rows if row[0] == "NOTE"]
    loads = [
        (int(row[2], 16), int(row[3], 16), int(row[5], 16)) for row in rows if row[0] == "LOAD"
    ]
    assert len(notes) == shape.cpus + 1  # one per possible CPU, then vmcoreinfo
    oracle = vmcoreinfo_items(ORACLE / shape.name / "vmcoreinfo.txt")
    kallsyms = {
        name: int(address, 16)
        for address, _, name in (
            line.split()
            for line in (ORACLE / shape.name / "kallsyms-text.txt").read_text().splitlines()
        )
    }
    text_vaddr, text_paddr, text_size = loads[0]
    assert text_vaddr == kallsyms["_text"]
    assert text_vaddr + text_size == kallsyms["_end"]
    assert text_vaddr - text_paddr == int(oracle["NUMBER(va_kernel_pa_offset)"], 16)
    linear = int(oracle["NUMBER(PAGE_OFFSET)"], 16) - int(oracle["NUMBER(phys_ram_base)"])
    # Every RAM range but the crash ranges and OpenSBI's: makedumpfile cannot read the latter.
    assert [(paddr, paddr + size) for _, paddr, size in loads[1:]] == list(shape.ram)
    assert all(vaddr == (linear + paddr) % (1 << 64) for vaddr, paddr, _ in loads[1:])


def test_layout_is_reproducible(
    build: Path, shape: Shape, planned: Planned, tmp_path: Path
) -> None:
    assert_reproducible(build, shape.name, planned, tmp_path)


def test_without_the_device_tree_the_layout_says_what_is_missing(
    build: Path, tmp_path: Path
) -> None:
    assert_device_tree_required(build, SHAPES[0].name, tmp_path, "riscv64")


def _inputs(build: Path, **changes: object) -> LayoutInputs:
    """The planner's inputs for the build on the 1 GiB guest, with `changes`."""
    sysfs = DATA / "sysfs" / SHAPES[0].name
    memory = read_iomem(sysfs / "proc" / "iomem")
    inputs = LayoutInputs(
        (build / "vmlinuz").read_bytes(), (build / "initrd.img").read_bytes(),
        (build / "cmdline.txt").read_text(), memory,
        read_crash_info_for(sysfs, memory, Arch.RISCV64), firmware=read_firmware(sysfs),
    )  # fmt: skip
    return dataclasses.replace(inputs, **changes)  # type: ignore[arg-type]


def _image_size_zero(kernel: bytes) -> bytes:
    image = bytearray(kernel)
    image[16:24] = bytes(8)  # boot-image-header.rst: image_size, at offset 16
    return bytes(image)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"initrd": bytes.fromhex("d00dfeed") + bytes(60)},
         "segment 'initrd' starts with the FDT magic: the kernel would take it"),
        ({"initrd": b""}, "segment 'initrd': the initrd is empty"),
        ({"firmware": None}, "the riscv64 layout needs the device tree the main kernel booted"),
        ({"cmdline": "x" * 1024}, "bootargs: 1024 bytes, the kernel keeps 1023"),
        ({"kernel": b"\x7fELF" + bytes(60)}, "vmlinuz: byte 0x4: expected ELFCLASS32 or"),
    ],
    ids=["fdt-magic-initrd", "empty-initrd", "no-device-tree", "long-cmdline", "not-an-image"],
)  # fmt: skip
def test_bad_inputs_are_one_clear_layout_error(
    build: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(LayoutError) as raised:
        plan(_inputs(build, **changes))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_image_without_image_size_is_refused(build: Path) -> None:
    kernel = _image_size_zero((build / "vmlinuz").read_bytes())
    with pytest.raises(LayoutError, match="image_size is 0"):
        plan(_inputs(build, kernel=kernel))
