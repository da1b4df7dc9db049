"""Tests for builder/kexec/layout/devicetree.py: the capture kernel's /chosen, read by fdtget.

The oracle is kexec-tools: in the same guest (4 GiB, `crashkernel=256M,high
crashkernel=64M,low`) it built a capture DTB from the same booted one; given
the same addresses ours must say the same in /chosen and nothing else may
differ (dtc's decompilation outside /chosen).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from builder.binfmt.fdt import DeviceTree, MemoryReservation, Node, cells, parse_fdt
from builder.errors import LayoutError
from builder.kexec.layout.devicetree import BootSeeds, capture_device_tree
from builder.kexec.memmap import Range
from tests.support.paths import DATA

SHAPE = "qemu-arm64-4g-4cpu-256m-high-64m-low"
BOOTED = DATA / "sysfs" / SHAPE / "sys" / "firmware" / "fdt"
THEIRS = DATA / "arm64-oracle" / SHAPE / "capture-fdt.dtb"
SAME_IN_CHOSEN = ("bootargs", "linux,elfcorehdr", "linux,usable-memory-range",
                  "linux,initrd-start", "linux,initrd-end", "stdout-path")  # fmt: skip


def fdtget(path: Path, node: str, prop: str, *options: str) -> str:
    return subprocess.run(
        ["fdtget", *options, str(path), node, prop], check=True, capture_output=True, text=True
    ).stdout.strip()


def properties(path: Path, node: str) -> list[str]:
    return subprocess.run(
        ["fdtget", "-p", str(path), node], check=True, capture_output=True, text=True
    ).stdout.split()


def outside_chosen(path: Path) -> str:
    text = subprocess.run(
        ["dtc", "-q", "-I", "dtb", "-O", "dts", str(path)], check=True, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    return re.sub(r"\n\tchosen \{.*?\n\t\};", "", text, flags=re.DOTALL)


def _their_inputs() -> dict[str, object]:
    """What kexec-tools put in /chosen, read back with fdtget (not our reader)."""
    usable = [int(word, 16) for word in fdtget(THEIRS, "/chosen", "linux,usable-memory-range",
                                                "-tx").split()]  # fmt: skip
    header = [
        int(word, 16) for word in fdtget(THEIRS, "/chosen", "linux,elfcorehdr", "-tx").split()
    ]
    start = int(fdtget(THEIRS, "/chosen", "linux,initrd-start", "-tx").replace(" ", ""), 16)
    end = int(fdtget(THEIRS, "/chosen", "linux,initrd-end", "-tx").replace(" ", ""), 16)

    def pairs(words: list[int]) -> list[Range]:
        # root cells are 2 and 2: <hi lo hi lo> per range
        return [Range(words[i] << 32 | words[i + 1],
                      (words[i] << 32 | words[i + 1]) + (words[i + 2] << 32 | words[i + 3]))
                for i in range(0, len(words), 4)]  # fmt: skip

    return {
        "bootargs": fdtget(THEIRS, "/chosen", "bootargs"),
        "elfcorehdr": pairs(header)[0],
        "usable": pairs(usable),
        "initrd": Range(start, end),
    }


def test_same_chosen_as_kexec_tools_and_nothing_else_changed(tmp_path: Path) -> None:
    inputs = _their_inputs()
    ours = tmp_path / "ours.dtb"
    ours.write_bytes(
        capture_device_tree(
            BOOTED.read_bytes(), source=str(BOOTED), seeds=BootSeeds(b"\x01" * 8, b"\x02" * 128),
            **inputs,  # type: ignore[arg-type]
        )
    )  # fmt: skip
    for prop in SAME_IN_CHOSEN:
        assert fdtget(ours, "/chosen", prop, "-tx") == fdtget(THEIRS, "/chosen", prop, "-tx"), prop
    # The main crash range first, then the low one (the capture kernel caps to the first).
    assert fdtget(ours, "/chosen", "linux,usable-memory-range", "-tx") == (
        "1 2b600000 0 10000000 0 f8000000 0 4000000"
    )
    assert fdtget(ours, "/chosen", "kaslr-seed", "-tx") == "1010101 1010101"
    assert len(fdtget(ours, "/chosen", "rng-seed", "-thhx").split()) == 128
    assert "linux,booted-from-kexec" in properties(ours, "/chosen")
    assert outside_chosen(ours) == outside_chosen(BOOTED)


def test_without_seeds_both_are_removed(tmp_path: Path) -> None:
    ours = tmp_path / "ours.dtb"
    ours.write_bytes(
        capture_device_tree(
            BOOTED.read_bytes(), source="booted", bootargs="console=ttyAMA0",
            elfcorehdr=Range(0x13B5FF000, 0x13B5FF238), usable=[Range(0x12B600000, 0x13B600000)],
            initrd=None, seeds=None,
        )
    )  # fmt: skip
    names = properties(ours, "/chosen")
    assert "kaslr-seed" in properties(BOOTED, "/chosen")
    assert not {"kaslr-seed", "rng-seed", "linux,initrd-start", "linux,initrd-end"} & set(names)
    assert fdtget(ours, "/chosen", "linux,elfcorehdr", "-tx") == "1 3b5ff000 0 238"
    assert len(ours.read_bytes()) < 16 * 1024  # repacked, not QEMU's 1 MiB


def test_old_initrd_reservation_is_dropped_and_cells_are_honoured() -> None:
    chosen = Node("chosen", (("linux,initrd-start", cells(0x48000000, 2)),
                             ("linux,initrd-end", cells(0x48000800, 2))))  # fmt: skip
    root = Node("", (("#address-cells", cells(1, 1)), ("#size-cells", cells(1, 1))), (chosen,))
    booted = DeviceTree(root, (MemoryReservation(0x48000000, 0x1000),
                               MemoryReservation(0x49000000, 0x1000))).to_bytes()  # fmt: skip
    header = Range(0x7000, 0x7400)
    low = [Range(0x1000000, 0x2000000)]
    blob = capture_device_tree(booted, source="small", bootargs="", elfcorehdr=header,
                               usable=low, initrd=None, seeds=None)  # fmt: skip
    tree = parse_fdt(blob, "ours")
    assert tree.reservations == (MemoryReservation(0x49000000, 0x1000),)
    chosen_out = tree.node("/chosen")
    assert chosen_out is not None
    assert chosen_out.property("linux,elfcorehdr") == cells(0x7000, 1) + cells(0x400, 1)
    with pytest.raises(LayoutError, match=r"^small: 0x100000000 does not fit in 1 cells"):
        high = [Range(1 << 32, (1 << 32) + 0x1000)]
        capture_device_tree(booted, source="small", bootargs="", elfcorehdr=header, usable=high,
                            initrd=None, seeds=None)  # fmt: skip


def test_bad_inputs() -> None:
    booted = BOOTED.read_bytes()
    three = [Range(0x1000 * i, 0x1000 * (i + 1)) for i in (1, 3, 5)]
    with pytest.raises(LayoutError, match="3 crash ranges: the capture kernel reads at most 2"):
        capture_device_tree(booted, source="b", bootargs="", elfcorehdr=Range(0, 0x400),
                            usable=three, initrd=None, seeds=None)  # fmt: skip
    with pytest.raises(LayoutError, match=r"^fdt: byte 0x0: expected device tree magic"):
        capture_device_tree(b"\0" * 64, source="fdt", bootargs="", elfcorehdr=Range(0, 0x400),
                            usable=three[:1], initrd=None, seeds=None)  # fmt: skip
    with pytest.raises(LayoutError, match="kaslr-seed must be 8 bytes"):
        BootSeeds(b"short")
