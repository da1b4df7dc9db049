"""Tests for builder/kexec/layout's shared parts: the kernel's checks (core.py), the
planner registry, and layout.json with its segment blobs (document.py).

The layouts written are the default recipe's x86_64 ones on a captured
/proc/iomem; hashlib checks every blob against layout.json.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.atomic import MARKER
from builder.errors import LayoutError, OutputError
from builder.image.pipeline import BuildResult
from builder.kexec.layout import planner
from builder.kexec.layout.core import (
    KexecSegment,
    Layout,
    check_layout,
)
from builder.kexec.layout.document import layout_json, write_layout
from builder.kexec.layout.x86_64 import (
    plan as plan_x86_64,
)
from builder.kexec.memmap import Range
from tests.unit.kexec.x86_layout_inputs import (
    copy_build,
    layout_inputs,
    memory_sample,
    sample_crash_info,
)

REGION = Range(0x3000_0000, 0x3C00_0000)


def _layout(*segments: KexecSegment, entry: int | None = None) -> Layout:
    return Layout(Arch.X86_64, entry if entry is not None else segments[0].mem, 1, REGION, segments)


def _segment(name: str, mem: int, memsz: int = 0x1000, data: bytes = b"x") -> KexecSegment:
    return KexecSegment(name, mem, memsz, data)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (_layout(*[_segment(f"s{i}", 0x3000_0000 + i * 0x1000) for i in range(17)]),
         "17 segments .* at most 16"),
        (_layout(_segment("kernel", 0x3000_0800)), "segment 'kernel': mem 0x30000800 is not page"),
        (_layout(_segment("initrd", 0x3000_0000, 0x1800)), "segment 'initrd': memsz 0x1800"),
        (_layout(_segment("cmdline", 0x3000_0000, 0)), "segment 'cmdline': memsz 0x0"),
        (_layout(_segment("boot_params", 0x3000_0000, 0x1000, bytes(0x1001))),
         "segment 'boot_params': bufsz 0x1001 is larger than memsz 0x1000"),
        (_layout(_segment("a", 0x3000_0000, 0x2000), _segment("b", 0x3000_1000)),
         "segment 'b' 0x30001000-0x30002000 overlaps segment 'a'"),
        (_layout(_segment("initrd", 0x2FFF_F000, 0x2000)),
         "segment 'initrd': 0x2ffff000-0x30001000 is not inside the crash region"),
        (_layout(_segment("purgatory", 0x3BFF_F000, 0x2000)),
         "segment 'purgatory': .* is not inside the crash region"),
        (_layout(_segment("purgatory", 0x3000_0000), entry=0x3C00_0000),
         "entry 0x3c000000 is not inside the crash region"),
        (_layout(_segment("purgatory", 0x3000_0000), entry=0x3000_5000),
         "entry 0x30005000 is not inside any segment"),
    ],
)  # fmt: skip
def test_each_check_names_what_is_wrong(layout: Layout, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        check_layout(layout)


def test_sixteen_segments_are_fine() -> None:
    check_layout(_layout(*[_segment(f"s{i}", 0x3000_0000 + i * 0x1000) for i in range(16)]))


def test_planner_registry_and_unknown_arch() -> None:
    assert planner(Arch.X86_64) is plan_x86_64
    with pytest.raises(LayoutError, match=r"no crash layout for architecture 's390x' \(have: "):
        planner(Arch.S390X)


def test_write_layout_files_match_the_json(default_build: BuildResult, tmp_path: Path) -> None:
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(layout_inputs(default_build, memory, sample_crash_info()))
    path = write_layout(layout, tmp_path)
    document = json.loads(path.read_text())
    assert document == json.loads(json.dumps(layout_json(layout)))
    for entry in document["segments"]:
        blob = (tmp_path / entry["blob"]).read_bytes()
        assert len(blob) == entry["bufsz"] <= entry["memsz"]
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    assert document["entry"] == layout.entry


def test_write_layout_replaces_the_directory_in_one_step(
    default_build: BuildResult, outdir: Path, tmp_path: Path
) -> None:
    build = copy_build(outdir, tmp_path / "out")
    before = {path.name: path.stat().st_ino for path in build.iterdir()}
    memory = memory_sample("qemu-q35-1g-crashkernel-192m.txt")
    with_backup = plan_x86_64(
        layout_inputs(default_build, memory, sample_crash_info(), backup=True)
    )
    write_layout(with_backup, build)
    names = sorted(path.name for path in build.iterdir())
    assert names == sorted([*before, "layout.json", "segments"])
    # The build's files are the same files, linked into the new directory.
    assert all(
        (build / name).stat().st_ino == inode for name, inode in before.items() if name != MARKER
    )
    assert any(path.name.endswith("-backup.bin") for path in (build / "segments").iterdir())
    # A later layout leaves nothing of the earlier one, and no staging directory.
    write_layout(plan_x86_64(layout_inputs(default_build, memory, sample_crash_info())), build)
    assert not any(path.name.endswith("-backup.bin") for path in (build / "segments").iterdir())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_write_layout_refuses_a_directory_of_other_files(
    default_build: BuildResult, tmp_path: Path
) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    layout = plan_x86_64(
        layout_inputs(default_build, memory_sample("qemu-q35-1g-crashkernel-192m.txt"))
    )
    with pytest.raises(OutputError, match="holds files kdump-build did not write"):
        write_layout(layout, foreign)
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]
