"""Offline `kdump-build layout` runs on captured guests, and the independent tools that read
what they wrote (fdtget for the device tree, readelf for the ELF core header).

Shared by the device-tree architectures' layout tests (tests/unit/kexec/test_layout_*.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import run_cli
from tests.support.paths import DATA


@dataclass(frozen=True)
class Planned:
    """A layout written by `kdump-build layout`: its directory and layout.json."""

    outdir: Path
    document: dict[str, object]

    def segment(self, name: str) -> tuple[int, int, bytes]:
        """(mem, memsz, bytes) of the segment called `name`."""
        for entry in self.document["segments"]:  # type: ignore[attr-defined]
            if entry["name"] == name:
                return entry["mem"], entry["memsz"], (self.outdir / entry["blob"]).read_bytes()
        raise AssertionError(f"no segment {name}")


def offline_layout(build: Path, fixture: str, tmp: Path) -> Planned:
    """`kdump-build layout` of a copy of `build` for the guest captured in tests/data/sysfs."""
    outdir = tmp / fixture
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(build), str(outdir)], check=True)
    sysfs = DATA / "sysfs" / fixture
    result = run_cli("layout", str(outdir), "--iomem", str(sysfs / "proc/iomem"),
                     "--sysfs", str(sysfs))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return Planned(outdir, json.loads((outdir / "layout.json").read_text()))


def fdtget(dtb: Path, prop: str, *options: str, node: str = "/chosen") -> str:
    """One property as fdtget prints it."""
    return subprocess.run(["fdtget", *options, str(dtb), node, prop], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def fdt_properties(dtb: Path, node: str = "/chosen") -> set[str]:
    """The property names of `node`, as fdtget lists them."""
    listing = subprocess.run(["fdtget", "-p", str(dtb), node], check=True, capture_output=True,
                             text=True).stdout  # fmt: skip
    return set(listing.split())


def two_cell_pairs(pairs: tuple[tuple[int, int], ...]) -> str:
    """fdtget -tx's spelling of <address size> pairs in two cells each."""
    words = []
    for address, size in pairs:
        words += [address >> 32, address & 0xFFFFFFFF, size >> 32, size & 0xFFFFFFFF]
    return " ".join(f"{word:x}" for word in words)


def readelf_segments(header: bytes, tmp: Path) -> list[list[str]]:
    """The NOTE and LOAD rows of `readelf -lW` on an ELF core header."""
    path = tmp / "elfcorehdr.bin"
    path.write_bytes(header)
    listing = subprocess.run(["readelf", "-lW", str(path)], check=True, capture_output=True,
                             text=True).stdout  # fmt: skip
    rows = [line.split() for line in listing.splitlines()]
    return [row for row in rows if row[:1] in (["NOTE"], ["LOAD"])]


def kexec_tools_segments(text: str) -> list[tuple[int, int]]:
    """(mem, memsz) of every segment in the output of kexec-tools' `kexec -p -d`."""
    mems = [int(value, 16) for value in re.findall(r"segment\[\d+\]\.mem\s+= (0x[0-9a-f]+)", text)]
    sizes = [int(value, 16) for value in re.findall(r"segment\[\d+\]\.memsz = (0x[0-9a-f]+)", text)]
    return list(zip(mems, sizes, strict=True))


def vmcoreinfo_items(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a VMCOREINFO text."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def build_recipe(recipe: Path, outdir: Path) -> Path:
    """`kdump-build RECIPE -o OUTDIR` on this host; OUTDIR."""
    result = run_cli(str(recipe), "-o", str(outdir))
    assert result.returncode == 0, result.stderr
    return outdir


def assert_reproducible(build: Path, fixture: str, planned: Planned, tmp: Path) -> None:
    """A second offline layout of the same build and guest gives the same document and blobs."""
    again = offline_layout(build, fixture, tmp)
    assert again.document == planned.document
    for entry in planned.document["segments"]:  # type: ignore[attr-defined]
        ours, theirs = again.outdir / entry["blob"], planned.outdir / entry["blob"]
        assert ours.read_bytes() == theirs.read_bytes()


def assert_device_tree_required(build: Path, fixture: str, tmp: Path, layout_name: str) -> None:
    """Without --sysfs (so no booted DTB) the layout fails in one line and writes nothing."""
    outdir = tmp / "out"
    subprocess.run(["cp", "-a", str(build), str(outdir)], check=True)
    iomem = DATA / "sysfs" / fixture / "proc" / "iomem"
    result = run_cli("layout", str(outdir), "--iomem", str(iomem))
    assert result.returncode == 2
    error = result.stderr.strip()
    assert error.startswith(f"kdump-build: error: the {layout_name} layout needs the device tree")
    assert len(error.splitlines()) == 1
    assert not (outdir / "layout.json").exists()


def check_capture_chosen(
    build: Path, planned: Planned, crash: tuple[tuple[int, int], ...], tmp: Path
) -> Path:
    """The layout's DTB as dtc and fdtget read it: /chosen names the build's command line,
    the `crash` ranges (start, size; the main one first), the ELF core header and the initrd,
    and no seeds (offline). The DTB's path, for more checks."""
    initrd_mem, _, initrd = planned.segment("initrd")
    header_mem, _, header = planned.segment("elfcorehdr")
    dtb = tmp / "capture.dtb"
    dtb.write_bytes(planned.segment("dtb")[2])
    subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dtb", "-o", "/dev/null", str(dtb)], check=True)
    assert fdtget(dtb, "bootargs") == (build / "cmdline.txt").read_text().strip()
    assert fdtget(dtb, "linux,usable-memory-range", "-tx") == two_cell_pairs(crash)
    assert fdtget(dtb, "linux,elfcorehdr", "-tx") == two_cell_pairs(((header_mem, len(header)),))
    start = int(fdtget(dtb, "linux,initrd-start", "-tx").replace(" ", ""), 16)
    end = int(fdtget(dtb, "linux,initrd-end", "-tx").replace(" ", ""), 16)
    assert (start, end) == (initrd_mem, initrd_mem + len(initrd))
    assert not {"kaslr-seed", "rng-seed"} & fdt_properties(dtb)  # reproducible
    return dtb
