"""Tests for builder/binfmt/fdt.py against dtc and fdtget (device-tree-compiler), on real DTBs.

The DTBs are the ones QEMU virt gave Debian 12's arm64 kernel (captured from
/sys/firmware/fdt: 1 MiB, padded), and the one kexec-tools built from it.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.binfmt.fdt import (
    DeviceTree,
    MemoryReservation,
    Node,
    cells,
    decode_cells,
    format_value,
    parse_fdt,
)
from builder.errors import FormatError, LayoutError
from tests.support.paths import DATA

BOOTED = sorted(DATA.glob("sysfs/qemu-arm64-*/sys/firmware/fdt"))
BUILT_BY_KEXEC_TOOLS = sorted(DATA.glob("arm64-oracle/*/capture-fdt.dtb"))
ALL_DTBS = BOOTED + BUILT_BY_KEXEC_TOOLS


def _write(tmp: Path, blob: bytes, name: str = "t.dtb") -> Path:
    path = tmp / name
    path.write_bytes(blob)
    return path


def dts(path: Path) -> str:
    """dtc's decompilation: the independent reading of a blob."""
    return subprocess.run(
        ["dtc", "-q", "-I", "dtb", "-O", "dts", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def fdtget(path: Path, *args: str) -> str:
    """fdtget's answer; options (``-tx``, ``-p``) first, then the node and property."""
    options = [arg for arg in args if arg.startswith("-")]
    rest = [arg for arg in args if not arg.startswith("-")]
    return subprocess.run(
        ["fdtget", *options, str(path), *rest], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.parametrize("path", ALL_DTBS, ids=lambda path: f"{path.parts[-4]}-{path.name}")
def test_round_trip_decompiles_the_same(path: Path, tmp_path: Path) -> None:
    tree = parse_fdt(path.read_bytes(), str(path))
    written = tree.to_bytes()
    assert dts(_write(tmp_path, written)) == dts(path)
    assert parse_fdt(written, "again").to_bytes() == written  # canonical: a fixed point
    assert len(written) < 16 * 1024 < len(path.read_bytes()) or path in BUILT_BY_KEXEC_TOOLS


def test_what_the_reader_sees_matches_fdtget(tmp_path: Path) -> None:
    path = BOOTED[0]
    tree = parse_fdt(path.read_bytes(), str(path))
    assert (
        tree.root_cells()
        == (2, 2)
        == tuple(int(fdtget(path, "/", name)) for name in ("#address-cells", "#size-cells"))
    )
    memory = tree.node("/memory@40000000")
    assert memory is not None and memory.property("reg") is not None
    assert tree.decode_ranges(memory.property("reg") or b"") == [(0x40000000, 0x40000000)]
    assert fdtget(path, "-tx", "/memory@40000000", "reg") == "0 40000000 0 40000000"
    names = sorted(child.name for child in tree.root.children)
    assert names == sorted(re.findall(r"^\t(\S+) \{$", dts(path), re.MULTILINE))
    chosen = tree.node("/chosen")
    assert chosen is not None
    assert [name for name, _ in chosen.properties] == fdtget(path, "-p", "/chosen").split()


def test_edits_show_in_fdtget(tmp_path: Path) -> None:
    tree = parse_fdt(BOOTED[0].read_bytes(), "booted")
    chosen = tree.node("/chosen")
    assert chosen is not None
    edited = chosen.with_properties(
        {"bootargs": b"console=ttyAMA0 test\0", "x,cell": cells(0x12345678, 1),
         "stdout-path": None}
    )  # fmt: skip
    tree = tree.with_node("/chosen", edited).with_node("/kdump", Node("kdump", (("y", b"h\0"),)))
    path = _write(tmp_path, tree.to_bytes())
    assert fdtget(path, "/chosen", "bootargs") == "console=ttyAMA0 test"
    assert fdtget(path, "-tx", "/chosen", "x,cell") == "12345678"
    assert "stdout-path" not in fdtget(path, "-p", "/chosen").split()
    assert fdtget(path, "/kdump", "y") == "h"


def test_reservations_round_trip(tmp_path: Path) -> None:
    tree = DeviceTree(Node(""), (MemoryReservation(0x48000000, 0x1000),), boot_cpuid_phys=3)
    path = _write(tmp_path, tree.to_bytes())
    assert "/memreserve/\t0x0000000048000000 0x0000000000001000;" in dts(path)
    assert parse_fdt(path.read_bytes(), "r") == tree


def test_nops_are_skipped() -> None:
    tree = parse_fdt(BOOTED[0].read_bytes(), "booted")
    blob = bytearray(tree.to_bytes())
    off_struct = int.from_bytes(blob[8:12], "big")
    blob[off_struct + 8 : off_struct + 8] = bytes.fromhex("0000000400000004")  # two FDT_NOP
    for field in (4, 12, 36):  # totalsize, off_dt_strings, size_dt_struct
        value = int.from_bytes(blob[field : field + 4], "big") + 8
        blob[field : field + 4] = value.to_bytes(4, "big")
    assert parse_fdt(bytes(blob), "nops").to_bytes() == tree.to_bytes()


def test_errors_name_the_file_and_the_byte_offset() -> None:
    blob = parse_fdt(BOOTED[0].read_bytes(), "booted").to_bytes()
    with pytest.raises(LayoutError, match=r"^dt: byte 0x0: expected device tree magic"):
        parse_fdt(b"\0" * 64, "dt", LayoutError)
    with pytest.raises(FormatError, match=r"^dt: byte 0x14: version 16 "):
        parse_fdt(blob[:20] + (16).to_bytes(4, "big") + blob[24:], "dt")
    cut = blob[:4] + (len(blob) + 4).to_bytes(4, "big") + blob[8:]
    with pytest.raises(FormatError, match=r"^dt: byte 0x4: totalsize "):
        parse_fdt(cut, "dt")


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_corrupt_blobs_give_one_error_with_an_offset(data: st.DataObject) -> None:
    blob = bytearray(parse_fdt(BOOTED[0].read_bytes(), "booted").to_bytes())
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(blob) - 1))
            blob[at] = data.draw(st.integers(0, 255))
    try:
        parse_fdt(bytes(blob), "fuzz")
    except FormatError as error:
        offset = re.match(r"fuzz: (?:byte|truncated at byte) (0x[0-9a-f]+)", str(error))
        assert offset is not None, str(error)
        assert int(offset.group(1), 16) <= len(blob)


def test_random_truncations_never_escape_as_other_errors() -> None:
    blob = parse_fdt(BOOTED[1].read_bytes(), "booted").to_bytes()
    rng = random.Random(10)
    for _ in range(300):
        with pytest.raises(FormatError):
            parse_fdt(blob[: rng.randrange(len(blob))], "cut")


def test_value_helpers() -> None:
    assert cells(0x12_3456_789A, 2) == bytes.fromhex("000000123456789a")
    with pytest.raises(FormatError, match="does not fit in 1 cells"):
        cells(1 << 32, 1)
    assert decode_cells(bytes(8)) == (0, 0)
    with pytest.raises(FormatError, match="whole 32-bit cells"):
        decode_cells(b"abc")
    assert format_value(b"arm,pl011\0arm,primecell\0") == '"arm,pl011", "arm,primecell"'
    tree = DeviceTree(Node("", (("#address-cells", cells(2, 1)), ("#size-cells", cells(1, 1)))))
    assert tree.decode_ranges(cells(0x1_4000_0000, 2) + cells(0x1000, 1)) == [
        (0x1_4000_0000, 0x1000)
    ]
    with pytest.raises(FormatError, match="2\\+1 cells"):
        tree.decode_ranges(bytes(16))
