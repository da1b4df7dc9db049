"""Tests for builder/kexec/layout: x86_64 planning, boot_params, ELF core header, checks, CLI.

Real inputs: Debian's bzImage and the default recipe's initrd, the captured
/proc/iomem samples, and sysfs values captured in a QEMU guest
(tests/data/sysfs/, made by `kdump-build capture-sysfs`). Independent
oracles: readelf for the ELF core header, hashlib for the digest the
purgatory is patched with, the setup header unpacked with struct.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from builder.arch import Arch, arch_info
from builder.atomic import MARKER
from builder.errors import LayoutError, OutputError
from builder.image.outputs import write_outputs
from builder.image.pipeline import BuildResult
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.layout import planner
from builder.kexec.layout.core import (
    KEXEC_ON_CRASH,
    KexecSegment,
    Layout,
    LayoutInputs,
    LayoutOptions,
    check_layout,
    corrupt_segment_for_testing,
)
from builder.kexec.layout.document import layout_json, write_layout
from builder.kexec.layout.elfcore import elf_core_header
from builder.kexec.layout.inputs import read_crash_info_for
from builder.kexec.layout.x86_64 import (
    E820_RAM,
    E820Entry,
    X86_64Details,
    capture_e820,
)
from builder.kexec.layout.x86_64 import (
    plan as plan_x86_64,
)
from builder.kexec.memmap import MemoryMap, Range, parse_iomem
from builder.kexec.purgatory.loader import LoadedPurgatory
from tests.conftest import run_cli
from tests.support.paths import REPO

IOMEM = REPO / "tests" / "data" / "iomem"
SYSFS = REPO / "tests" / "data" / "sysfs" / "qemu-1g-crashkernel-192m"
SAMPLES = sorted(IOMEM.glob("*.txt"))
MIB = 1 << 20
REGION = Range(0x3000_0000, 0x3C00_0000)


def _memory(name: str) -> MemoryMap:
    return parse_iomem((IOMEM / name).read_text(), source=name)


@pytest.fixture(scope="module")
def outdir(default_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("build") / "out"
    write_outputs(default_build, directory)
    return directory


def _inputs(build: BuildResult, memory: MemoryMap, info: CrashInfo | None = None, *,
            cmdline: str | None = None, backup: bool = False) -> LayoutInputs:  # fmt: skip
    return LayoutInputs(
        kernel=build.kernel_bytes,
        initrd=build.initrd,
        cmdline=build.cmdline if cmdline is None else cmdline,
        memory=memory,
        info=info,
        options=LayoutOptions(backup=backup),
    )


def _details(layout: Layout) -> X86_64Details:
    assert isinstance(layout.details, X86_64Details)
    return layout.details


def _info() -> CrashInfo:
    iomem = parse_iomem((SYSFS / "proc" / "iomem").read_text())
    return read_crash_info_for(SYSFS, iomem, Arch.X86_64)


# ---------------------------------------------------------------------------
# Planning on every captured memory map


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_layout_of_each_sample_passes_the_checks(default_build: BuildResult, sample: Path) -> None:
    memory = parse_iomem(sample.read_text(), source=sample.name)
    layout = plan_x86_64(_inputs(default_build, memory, _info()))
    check_layout(layout)
    region = memory.crash_region()
    assert layout.crash_region == region
    assert [s.name for s in layout.segments] == [
        "kernel", "initrd", "boot_params", "cmdline", "elfcorehdr", "purgatory",
    ]  # fmt: skip
    assert layout.flags == KEXEC_ON_CRASH | (62 << 16)  # EM_X86_64 in the high 16 bits
    assert layout.flags == KEXEC_ON_CRASH | arch_info(Arch.X86_64).kexec_arch
    kernel = layout.segment("kernel")
    header = default_build.kernel.bzimage
    assert header is not None
    assert kernel.mem % header.kernel_alignment == 0
    assert kernel.mem >= max(MIB, header.pref_address or 0)
    assert kernel.memsz >= (header.init_size or 0)
    assert kernel.data == default_build.kernel_bytes[header.kernel_offset :]
    purgatory = layout.segment("purgatory")
    assert purgatory.range.contains_address(layout.entry)


def test_crash_region_above_4g_uses_ext_fields(default_build: BuildResult) -> None:
    memory = _memory("server-16g-crashkernel-512m-high.txt")
    assert memory.crash_region().start >= 1 << 32
    assert memory.crash_low_region() is not None
    layout = plan_x86_64(_inputs(default_build, memory, _info()))
    params = layout.segment("boot_params").data
    initrd = layout.segment("initrd")
    cmdline = layout.segment("cmdline")
    low, high = (
        struct.unpack_from("<II", params, 0x218)[0],
        struct.unpack_from("<I", params, 0xC0)[0],
    )
    assert (high << 32) | low == initrd.mem
    size = (
        struct.unpack_from("<I", params, 0x21C)[0] | struct.unpack_from("<I", params, 0xC4)[0] << 32
    )
    assert size == len(default_build.initrd)
    pointer = (
        struct.unpack_from("<I", params, 0x228)[0] | struct.unpack_from("<I", params, 0xC8)[0] << 32
    )
    assert pointer == cmdline.mem
    # The low crash range is RAM for the capture kernel.
    low_range = memory.crash_low_region()
    assert low_range is not None
    assert E820Entry(low_range.start, low_range.end, E820_RAM) in _details(layout).e820


def _fragmented_firmware_map(count: int) -> MemoryMap:
    """1 GiB of RAM with a crash region, and `count` small reserved ranges above it."""
    lines = ["00001000-0009fbff : System RAM", "00100000-3fffffff : System RAM",
             "  30000000-3bffffff : Crash kernel"]  # fmt: skip
    for index in range(count):
        start = 0x4000_0000 + index * 0x2000
        lines.append(f"{start:08x}-{start + 0xFFF:08x} : Reserved")
    return parse_iomem("\n".join(lines) + "\n")


def test_more_than_128_e820_entries_go_to_setup_data(default_build: BuildResult) -> None:
    # The capture map keeps every firmware range of the main map: past 125 of
    # them it no longer fits the zero page's 128 slots.
    memory = _fragmented_firmware_map(200)
    layout = plan_x86_64(_inputs(default_build, memory, _info()))
    entries = _details(layout).e820
    assert len(entries) > 128
    segment = layout.segment("boot_params")
    params = segment.data
    assert params[0x1E8] == 128
    (pointer,) = struct.unpack_from("<Q", params, 0x250)
    assert pointer == segment.mem + 4096
    following, kind, length = struct.unpack_from("<QII", params, 4096)
    assert (following, kind) == (0, 1)  # the last node, SETUP_E820_EXT
    assert length == (len(entries) - 128) * 20
    decoded = [struct.unpack_from("<QQI", params, 0x2D0 + 20 * i) for i in range(128)]
    decoded += [struct.unpack_from("<QQI", params, 4096 + 16 + 20 * i)
                for i in range(len(entries) - 128)]  # fmt: skip
    assert decoded == [(e.start, e.end - e.start, e.type) for e in entries]
    assert segment.memsz >= len(params)


# ---------------------------------------------------------------------------
# boot_params, e820 and command line


def test_boot_params_header_and_pointers(default_build: BuildResult) -> None:
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    info = _info()
    layout = plan_x86_64(_inputs(default_build, memory, info))
    params = layout.segment("boot_params").data
    kernel = default_build.kernel_bytes
    end = 0x202 + kernel[0x201]
    # The setup header is copied except the fields a loader fills in.
    filled = {0x210, 0x211, *range(0x218, 0x220), *range(0x228, 0x22C)}
    for offset in range(0x1F1, end):
        if offset not in filled:
            assert params[offset] == kernel[offset], hex(offset)
    assert params[0x202:0x206] == b"HdrS"
    assert params[0x210] == 0xD0
    assert struct.unpack_from("<Q", params, 0x070)[0] == info.acpi_rsdp
    assert params[0x1EF] == 0  # sentinel: the kernel would wipe ext_ fields otherwise
    cmdline = layout.segment("cmdline")
    text = cmdline.data.rstrip(b"\0").decode()
    elfcorehdr = layout.segment("elfcorehdr").mem
    assert text == f"{default_build.cmdline} elfcorehdr={elfcorehdr >> 10}K"
    assert cmdline.data.endswith(b"\0")


def test_capture_e820_gives_crash_region_minus_elfcorehdr() -> None:
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    region = memory.crash_region()
    hole = Range(region.end - 0x1000, region.end)
    entries = capture_e820(memory, [hole])
    ram = [(e.start, e.end) for e in entries if e.type == E820_RAM]
    assert ram == [(0x1000, 0x9FC00), (region.start, hole.start)]
    # ACPI/NVS/reserved ranges kept, nothing of the main kernel's RAM outside the region.
    assert E820Entry(0x3FFDF000, 0x40000000, 2) in entries
    assert all(not (e.type == E820_RAM and 0x100000 <= e.start < region.start) for e in entries)


def test_command_line_too_long_names_the_segment(default_build: BuildResult) -> None:
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    with pytest.raises(
        LayoutError,
        match=r"segment 'cmdline': 5\d\d\d bytes, the kernel accepts 2047 \(cmdline_size\)",
    ):
        plan_x86_64(_inputs(default_build, memory, None, cmdline="x" * 5000))


def test_crash_region_too_small_names_the_segment(default_build: BuildResult) -> None:
    memory = parse_iomem(
        "00001000-0009fbff : System RAM\n00100000-3fffffff : System RAM\n"
        "  3f000000-3fffffff : Crash kernel\n"
    )
    # The kernel needs init_size (0x260 in the setup header, Documentation/arch/x86/
    # boot.rst) rounded up to a page, whatever Debian's current kernel makes that.
    (init_size,) = struct.unpack_from("<I", default_build.kernel_bytes, 0x260)
    needed = -(-init_size // 4096) * 4096
    with pytest.raises(LayoutError, match=f"segment 'kernel': no hole of {needed:#x} bytes"):
        plan_x86_64(_inputs(default_build, memory, None))


def test_no_crash_region() -> None:
    memory = parse_iomem("00100000-3fffffff : System RAM\n")
    with pytest.raises(LayoutError, match="no 'Crash kernel' range"):
        memory.crash_region()


# ---------------------------------------------------------------------------
# ELF core header, checked with readelf


def _readelf(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "elfcorehdr"
    path.write_bytes(data)
    result = subprocess.run(
        ["readelf", "-W", "-h", "-l", str(path)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_elf_core_header_read_by_readelf(default_build: BuildResult, tmp_path: Path) -> None:
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    info = _info()
    layout = plan_x86_64(_inputs(default_build, memory, info))
    listing = _readelf(layout.segment("elfcorehdr").data, tmp_path)
    assert "CORE (Core file)" in listing
    assert "Advanced Micro Devices X86-64" in listing
    notes = [line.split() for line in listing.splitlines() if line.strip().startswith("NOTE")]
    loads = [line.split() for line in listing.splitlines() if line.strip().startswith("LOAD")]
    assert len(notes) == len(info.cpu_notes) + 1
    assert [int(n[1], 16) for n in notes] == [
        *(note.address for note in info.cpu_notes), info.vmcoreinfo_address,
    ]  # fmt: skip
    text = info.kernel_text
    assert text is not None
    assert (int(loads[0][2], 16), int(loads[0][3], 16), int(loads[0][5], 16)) == (
        text.vaddr, text.paddr, text.size,
    )  # fmt: skip
    ram = [(int(load[3], 16), int(load[3], 16) + int(load[5], 16)) for load in loads[1:]]
    region = memory.crash_region()
    assert ram == [(0x100000, region.start), (region.end, 0x3FFDF000)]
    # Direct-map virtual addresses follow the captured page_offset.
    assert info.page_offset is not None
    assert int(loads[1][2], 16) == info.page_offset + 0x100000


def test_elf_core_header_with_backup_points_at_the_copy(default_build: BuildResult) -> None:
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(_inputs(default_build, memory, _info(), backup=True))
    backup = layout.segment("backup")
    assert backup.memsz == 640 << 10 and backup.bufsz == 0
    ranges = _details(layout).dump_ranges
    assert ranges[0].to_json() == {"start": 0x1000, "end": 0x9FC00, "offset": backup.mem + 0x1000}
    assert all(not Range(e.start, e.end).overlaps(backup.range)
               for e in _details(layout).e820 if e.type == E820_RAM)  # fmt: skip


def test_elf_core_header_without_info_lists_only_ram() -> None:
    ram = [Range(0x100000, 0x200000), Range(0x300000, 0x400000)]
    header = elf_core_header(None, ram, machine=arch_info(Arch.X86_64).elf_machine)
    assert struct.unpack_from("<H", header, 0x38)[0] == 2


# ---------------------------------------------------------------------------
# The purgatory verifies exactly the other segments


@pytest.mark.parametrize("backup", [False, True])
def test_purgatory_digest_covers_every_other_segment(
    default_build: BuildResult, backup: bool
) -> None:
    """The backup segment too, as the zeros it holds until the purgatory has checked."""
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(_inputs(default_build, memory, _info(), backup=backup))
    assert ("backup" in [s.name for s in layout.segments]) is backup
    purgatory_segment = layout.segment("purgatory")
    others = [s for s in layout.segments if s.name != "purgatory"]
    # In memory each segment is its bytes, then zeros up to memsz (hashlib, not our digest code).
    expected = hashlib.sha256(b"".join(s.data + bytes(s.memsz - s.bufsz) for s in others)).digest()
    loaded = _as_loaded(purgatory_segment)
    assert loaded.read("purgatory_sha256_digest") == expected
    table = loaded.read("purgatory_sha256_regions")
    regions = [struct.unpack_from("<QQ", table, 16 * i) for i in range(len(others))]
    assert regions == [(s.mem, s.memsz) for s in others]
    registers = loaded.read("purgatory_entry_regs")
    rsi = struct.unpack_from("<Q", registers, 4 * 8)[0]
    rip = struct.unpack_from("<Q", registers, 16 * 8)[0]
    assert rsi == layout.segment("boot_params").mem
    assert rip == layout.segment("kernel").mem + 0x200


def _as_loaded(segment: KexecSegment) -> LoadedPurgatory:
    from builder.kexec.purgatory.x86_64 import load_x86_64_purgatory

    fresh = load_x86_64_purgatory(segment.mem)
    return LoadedPurgatory(fresh.load_address, segment.data, fresh.memsz, fresh.alignment,
                           fresh.entry, fresh.symbols)  # fmt: skip


def test_corrupting_for_testing_changes_one_byte_after_the_digest(
    default_build: BuildResult,
) -> None:
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(_inputs(default_build, memory, None))
    broken = corrupt_segment_for_testing(layout, "initrd")
    before, after = layout.segment("initrd").data, broken.segment("initrd").data
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 1
    assert broken.segment("purgatory").data == layout.segment("purgatory").data
    # The backup segment is loaded as zeros: its corruption is one byte that is not.
    with_backup = plan_x86_64(_inputs(default_build, memory, None, backup=True))
    assert corrupt_segment_for_testing(with_backup, "backup").segment("backup").data == b"\xff"
    with pytest.raises(LayoutError, match="no segment named 'nope'"):
        corrupt_segment_for_testing(layout, "nope")


# ---------------------------------------------------------------------------
# The checks, one error each


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


# ---------------------------------------------------------------------------
# layout.json and the command line


def test_write_layout_files_match_the_json(default_build: BuildResult, tmp_path: Path) -> None:
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    layout = plan_x86_64(_inputs(default_build, memory, _info()))
    path = write_layout(layout, tmp_path)
    document = json.loads(path.read_text())
    assert document == json.loads(json.dumps(layout_json(layout)))
    for entry in document["segments"]:
        blob = (tmp_path / entry["blob"]).read_bytes()
        assert len(blob) == entry["bufsz"] <= entry["memsz"]
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    assert document["entry"] == layout.entry


def test_cli_layout_offline_is_deterministic(outdir: Path) -> None:
    sample = IOMEM / "qemu-q35-1g-crashkernel-192m.txt"
    first = run_cli("layout", str(outdir), "--iomem", str(sample), "--sysfs", str(SYSFS), "--json")
    assert first.returncode == 0, first.stderr
    second = run_cli("layout", str(outdir), "--iomem", str(sample), "--sysfs", str(SYSFS), "--json")
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert [s["name"] for s in document["segments"]][-1] == "purgatory"
    assert (outdir / "layout.json").exists()
    assert sorted(p.name for p in (outdir / "segments").iterdir()) == sorted(
        Path(s["blob"]).name for s in document["segments"]
    )


def test_cli_layout_without_sysfs_still_plans(outdir: Path) -> None:
    sample = IOMEM / "server-16g-crashkernel-512m-high.txt"
    result = run_cli("layout", str(outdir), "--iomem", str(sample))
    assert result.returncode == 0, result.stderr
    assert "elfcorehdr=" in result.stdout


def test_cli_layout_bad_iomem_is_one_line_and_keeps_old_layout(
    outdir: Path, tmp_path: Path
) -> None:
    good = run_cli(
        "layout", str(outdir), "--iomem", str(IOMEM / "qemu-q35-1g-crashkernel-192m.txt")
    )
    assert good.returncode == 0, good.stderr
    before = (outdir / "layout.json").read_text()
    bad = tmp_path / "iomem"
    bad.write_text("00100000-3fffffff : System RAM\nthis is not iomem\n")
    result = run_cli("layout", str(outdir), "--iomem", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kdump-build: error: {bad}: line 2: not 'start-end : name': 'this is not iomem'"
    ]
    assert (outdir / "layout.json").read_text() == before


def test_cli_layout_without_crash_region(outdir: Path, tmp_path: Path) -> None:
    iomem = tmp_path / "iomem"
    iomem.write_text("00100000-3fffffff : System RAM\n")
    result = run_cli("layout", str(outdir), "--iomem", str(iomem))
    assert result.returncode == 2
    assert "no 'Crash kernel' range" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_layout_missing_outdir(tmp_path: Path) -> None:
    result = run_cli("layout", str(tmp_path / "nope"), "--iomem", str(SAMPLES[0]))
    assert result.returncode == 2
    assert "not a directory" in result.stderr


def test_cli_print_kexec_command(outdir: Path) -> None:
    result = run_cli("load", str(outdir), "--method", "file", "--print-kexec-command")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"kexec -p -s {outdir}/vmlinuz --initrd={outdir}/initrd.img")
    assert "--command-line='irqpoll" in result.stdout


def test_cli_load_bad_method(outdir: Path) -> None:
    result = run_cli("load", str(outdir), "--method", "fast")
    assert result.returncode == 2
    assert "--method: 'fast' is not one of segments, file, auto" in result.stderr


def test_recipe_backup_region_reaches_the_layout(
    default_build: BuildResult, tmp_path: Path
) -> None:
    """kernel.backup_region in the recipe turns the backup segment on; flags still win."""
    forced = dataclasses.replace(
        default_build,
        recipe=dataclasses.replace(
            default_build.recipe,
            kernel=dataclasses.replace(default_build.recipe.kernel, backup_region=True),
        ),
    )
    directory = tmp_path / "out"
    write_outputs(forced, directory)
    assert json.loads((directory / "manifest.json").read_text())["kexec"] == {"backup_region": True}
    sample = str(IOMEM / "qemu-q35-1g-crashkernel-192m.txt")

    def segment_names(*flags: str) -> list[str]:
        result = run_cli("layout", str(directory), "--iomem", sample, "--json", *flags)
        assert result.returncode == 0, result.stderr
        return [segment["name"] for segment in json.loads(result.stdout)["segments"]]

    assert "backup" in segment_names()
    assert "backup" not in segment_names("--no-backup")


# ---------------------------------------------------------------------------
# The planner registry, typed details, and the build's architecture


def test_planner_registry_and_unknown_arch() -> None:
    assert planner(Arch.X86_64) is plan_x86_64
    with pytest.raises(LayoutError, match=r"no crash layout for architecture 's390x' \(have: "):
        planner(Arch.S390X)


def test_details_keep_the_layout_json_keys(default_build: BuildResult) -> None:
    layout = plan_x86_64(_inputs(default_build, _memory("qemu-q35-1g-crashkernel-192m.txt")))
    assert list(layout.details.to_json()) == [
        "cmdline", "kernel_entry", "boot_params", "elfcorehdr", "backup", "e820",
        "dump_ranges", "crash_info", "kernel_image",
    ]  # fmt: skip
    assert layout.details.cmdline == layout.segment("cmdline").data.rstrip(b"\0").decode()


def _copy_build(outdir: Path, destination: Path) -> Path:
    shutil.copytree(outdir, destination)
    for stale in ("layout.json", "segments"):
        path = destination / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return destination


def test_layout_takes_the_arch_from_the_manifest(outdir: Path, tmp_path: Path) -> None:
    sample = str(IOMEM / "qemu-q35-1g-crashkernel-192m.txt")
    build = _copy_build(outdir, tmp_path / "out")
    result = run_cli("layout", str(build), "--iomem", sample, "--arch", "s390x")
    assert result.returncode == 2
    assert "no crash layout for architecture 's390x'" in result.stderr
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["arch"] = "sparc"
    (build / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("layout", str(build), "--iomem", sample)
    assert result.returncode == 2
    assert "manifest.json: arch: 'sparc' is not one of x86_64" in result.stderr
    del manifest["arch"]
    (build / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("layout", str(build), "--iomem", sample)
    assert result.returncode == 2
    assert "manifest.json: records no architecture (give --arch)" in result.stderr
    result = run_cli("layout", str(build), "--iomem", sample, "--arch", "amd64", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["arch"] == "x86_64"


def test_write_layout_replaces_the_directory_in_one_step(
    default_build: BuildResult, outdir: Path, tmp_path: Path
) -> None:
    build = _copy_build(outdir, tmp_path / "out")
    before = {path.name: path.stat().st_ino for path in build.iterdir()}
    memory = _memory("qemu-q35-1g-crashkernel-192m.txt")
    with_backup = plan_x86_64(_inputs(default_build, memory, _info(), backup=True))
    write_layout(with_backup, build)
    names = sorted(path.name for path in build.iterdir())
    assert names == sorted([*before, "layout.json", "segments"])
    # The build's files are the same files, linked into the new directory.
    assert all(
        (build / name).stat().st_ino == inode for name, inode in before.items() if name != MARKER
    )
    assert any(path.name.endswith("-backup.bin") for path in (build / "segments").iterdir())
    # A later layout leaves nothing of the earlier one, and no staging directory.
    write_layout(plan_x86_64(_inputs(default_build, memory, _info())), build)
    assert not any(path.name.endswith("-backup.bin") for path in (build / "segments").iterdir())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_write_layout_refuses_a_directory_of_other_files(
    default_build: BuildResult, tmp_path: Path
) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    layout = plan_x86_64(_inputs(default_build, _memory("qemu-q35-1g-crashkernel-192m.txt")))
    with pytest.raises(OutputError, match="holds files kdump-build did not write"):
        write_layout(layout, foreign)
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]
