"""The cpio newc writer and reader, checked with GNU cpio, bsdtar and the compression tools."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.binfmt.cpio import (
    NEWC_HEADER_SIZE,
    CpioEntry,
    read_initrd,
    segments,
    write_cpio,
)
from builder.compression import LZ4_LEGACY_CHUNK, Compression, compress
from builder.errors import InitrdError
from builder.image.initrd import InitrdPlan, early_cpio
from tests.support.initrds import sample_plan


def listing(tool: list[str], archive: bytes) -> str:
    result = subprocess.run(tool, input=archive, capture_output=True, check=True)
    return result.stdout.decode()


def test_gnu_cpio_reads_what_we_write() -> None:
    archive = write_cpio(sample_plan().members())
    text = listing(["cpio", "-itv", "--quiet"], archive)
    lines = {
        line.split()[-1] if "->" not in line else line.split()[-3]: line
        for line in text.splitlines()
    }
    assert set(lines) >= {"init", "usr", "usr/lib", "usr/lib/x", "bin", "bin/sh", "dev/console"}
    assert lines["bin/sh"].startswith("lrwxrwxrwx") and lines["bin/sh"].endswith("-> /bin/busybox")
    assert lines["usr/lib/x/libx.so.1"].endswith("-> libx.so.1.0")
    assert lines["dev/console"].startswith("crw-------") and "5,   1" in lines["dev/console"]
    assert lines["dev/null"].startswith("crw-rw-rw-")
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["usr"].startswith("drwxr-xr-x")


def test_bsdtar_reads_what_we_write() -> None:
    archive = write_cpio(sample_plan().members())
    text = listing(["bsdtar", "-tvf", "-"], archive)
    assert "bin/sh -> /bin/busybox" in text
    assert "usr/lib/x/libx.so.1 -> libx.so.1.0" in text
    extracted = listing(["bsdtar", "-xOf", "-", "init"], archive)
    assert extracted == "#!/bin/sh\necho hi\n"


def test_we_read_what_gnu_cpio_writes(tmp_path: Path) -> None:
    """GNU cpio's own newc output, with real inode numbers and times, reads back."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_bytes(b"crash\n")
    (tmp_path / "etc/empty").write_bytes(b"")
    (tmp_path / "sh").symlink_to("/bin/busybox")
    archive = subprocess.run(
        "find . -mindepth 1 | sort | cpio -o -H newc --quiet",
        capture_output=True, check=True, shell=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    entries = {entry.path: entry for entry in read_initrd(archive, "gnu.cpio")}
    assert set(entries) == {"/etc", "/etc/hostname", "/etc/empty", "/sh"}
    assert entries["/etc/hostname"].data == b"crash\n"
    assert stat.S_ISDIR(entries["/etc"].mode) and entries["/etc/empty"].size == 0
    assert entries["/sh"].target == "/bin/busybox"


def test_writer_takes_plain_entries() -> None:
    entries = [
        CpioEntry("/etc", stat.S_IFDIR | 0o755),
        CpioEntry("/etc/hostname", stat.S_IFREG | 0o644, b"crash\n"),
        CpioEntry("/dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
    ]
    archive = write_cpio(entries, mtime=1234)
    assert len(archive) % 512 == 0
    read = read_initrd(archive)
    assert [(entry.path, entry.mode, entry.data, entry.rdev) for entry in read] == [
        (entry.path, entry.st_mode, entry.data, entry.rdev) for entry in entries
    ]
    # nlink 2 for the directory, mtime as given: the header's 5th and 6th fields.
    assert archive[6 + 4 * 8 : 6 + 6 * 8] == b"%08X%08X" % (2, 1234)


@pytest.mark.parametrize(
    ("method", "tool"),
    [
        (Compression.ZSTD, ["zstd", "-dc"]),
        (Compression.GZIP, ["gzip", "-dc"]),
        (Compression.XZ, ["xz", "-dc"]),
        (Compression.LZ4, ["lz4", "-dc"]),
        (Compression.NONE, ["cat"]),
    ],
)
def test_compressions_are_read_by_the_standard_tools(method: Compression, tool: list[str]) -> None:
    archive = write_cpio(sample_plan().members())
    compressed = compress(archive, method, 3)
    assert subprocess.run(tool, input=compressed, capture_output=True, check=True).stdout == archive
    assert [entry.path for entry in read_initrd(compressed)] == [
        member.path for member in sample_plan().members()
    ]


def test_reads_what_the_standard_tools_compress() -> None:
    archive = write_cpio(sample_plan().members())
    for tool in (["zstd", "-19", "-c"], ["gzip", "-9", "-c"], ["xz", "--check=crc32", "-c"],
                 ["lz4", "-l", "-c"], ["bzip2", "-c"], ["xz", "--format=lzma", "-c"]):  # fmt: skip
        packed = subprocess.run(tool, input=archive, capture_output=True, check=True).stdout
        (segment,) = segments(packed)
        assert segment.contents == archive, tool
        assert len(read_initrd(packed)) == len(sample_plan().members()), tool


def test_reads_early_cpio_then_compressed_main() -> None:
    early_plan = InitrdPlan()
    early_plan.file("/kernel/x86/microcode/GenuineIntel.bin", b"ucode")
    early = write_cpio(early_plan.members())
    main = compress(write_cpio(sample_plan().members()), Compression.ZSTD, 3)
    entries = read_initrd(early + main)
    assert entries[0].path == "/kernel"
    assert {entry.segment for entry in entries} == {0, 1}
    by_path = {entry.path: entry for entry in entries}
    assert by_path["/bin/sh"].target == "/bin/busybox"
    assert by_path["/dev/console"].rdev == (5, 1)
    found = segments(early + main)
    assert [(part.start, part.compression) for part in found] == [
        (0, Compression.NONE),
        (len(early), Compression.ZSTD),
    ]
    assert found[1].end == len(early + main) and not found[0].compressed


def test_several_archives_inside_one_stream() -> None:
    """The pipeline splits members into archives and compresses them as one stream each."""
    first, second = InitrdPlan(), InitrdPlan()
    first.file("/a", b"1")
    second.file("/b", b"2")
    stream = compress(write_cpio(first.members()) + write_cpio(second.members()),
                      Compression.GZIP, 6)  # fmt: skip
    assert [(entry.path, entry.segment) for entry in read_initrd(stream)] == [("/a", 0), ("/b", 0)]


def test_corrupt_initrd_names_the_offset() -> None:
    archive = write_cpio(sample_plan().members())
    with pytest.raises(InitrdError, match=r"^initrd: byte 0x0: expected a cpio newc archive or"):
        read_initrd(b"garbage" + archive)
    with pytest.raises(InitrdError, match=r"^x.img: truncated at byte 0x[0-9a-f]+: expected cpio"):
        read_initrd(archive[:300], "x.img")
    packed = bytearray(compress(archive, Compression.GZIP, 6))
    packed[-6] ^= 0xFF  # inside the CRC32 of the trailer
    with pytest.raises(InitrdError, match=r"^initrd: byte 0x0: expected valid gzip data"):
        read_initrd(bytes(packed))
    with pytest.raises(InitrdError, match=r"^initrd: byte 0x0: gzip data is truncated"):
        read_initrd(compress(archive, Compression.GZIP, 6)[:-40])


def test_corrupt_archive_inside_a_stream_names_the_stream() -> None:
    archive = write_cpio(sample_plan().members())
    second = archive.index(b"070701", NEWC_HEADER_SIZE)  # the second member's header
    broken = archive[:second] + b"zz" + archive[second + 2 :]
    packed = write_cpio([]) + compress(broken, Compression.ZSTD, 3)
    with pytest.raises(
        InitrdError,
        match=rf"^initrd: zstd stream at byte 0x200: byte {second:#x}: expected cpio newc magic",
    ):
        read_initrd(packed)
    nested = compress(compress(archive, Compression.GZIP, 1), Compression.ZSTD, 1)
    with pytest.raises(InitrdError, match=r"stream at byte 0x0: byte 0x0: .* found gzip data"):
        read_initrd(nested)


def test_lz4_is_the_kernels_legacy_format_in_8_mib_chunks() -> None:
    plan = sample_plan()
    plan.file("/big", bytes(range(256)) * (LZ4_LEGACY_CHUNK // 256 + 1000))
    archive = write_cpio(plan.members())
    compressed = compress(archive, Compression.LZ4, 9)
    # lib/decompress_unlz4.c: magic 0x184C2102 little-endian, then (size, block) chunks.
    assert compressed[:4] == bytes.fromhex("02214c18")
    first = int.from_bytes(compressed[4:8], "little")
    second = int.from_bytes(compressed[8 + first : 12 + first], "little")
    assert 12 + first + second == len(compressed)
    assert subprocess.run(["lz4", "-dc"], input=compressed, capture_output=True).stdout == archive
    assert read_initrd(compressed)[-1].path == "/usr/lib/x/libx.so.1.0"


def test_early_microcode_cpio_read_by_gnu_cpio_and_us() -> None:
    early = early_cpio({"/kernel/x86/microcode/GenuineIntel.bin": b"A" * 5 + b"B" * 7}, 7)
    main = compress(write_cpio(sample_plan().members()), Compression.LZ4, 9)
    image = early + main
    # GNU cpio stops after the first archive: the early one, uncompressed, at offset 0.
    text = listing(["cpio", "-itv", "--quiet"], image)
    names = [line.split()[-1] for line in text.splitlines()]
    assert names == [
        "kernel",
        "kernel/x86",
        "kernel/x86/microcode",
        "kernel/x86/microcode/GenuineIntel.bin",
    ]
    assert len(early) % 512 == 0
    entries = read_initrd(image)
    assert entries[3].data == b"AAAAABBBBBBB" and entries[3].segment == 0
    assert {entry.segment for entry in entries[4:]} == {1}


SEEDS = [
    write_cpio(sample_plan().members()),
    write_cpio([]) + compress(write_cpio(sample_plan().members()), Compression.ZSTD, 1),
    compress(write_cpio(sample_plan().members()), Compression.GZIP, 1),
    compress(write_cpio(sample_plan().members()), Compression.LZ4, 1),
]


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.sampled_from(SEEDS),
    cut=st.integers(0, 4096),
    flips=st.lists(st.integers(0, 8 * 700), max_size=4),
)
def test_property_only_initrd_errors_escape(seed: bytes, cut: int, flips: list[int]) -> None:
    data = bytearray(seed[: len(seed) - cut] if cut < len(seed) else seed)
    for bit in flips:
        if bit // 8 < len(data):
            data[bit // 8] ^= 1 << (bit % 8)
    try:
        entries = read_initrd(bytes(data), "fuzz")
        found = segments(bytes(data), "fuzz")
    except InitrdError as error:
        assert str(error).startswith("fuzz") and "\n" not in str(error)
        return
    assert all(entry.size == len(entry.data) for entry in entries)
    assert all(part.start < part.end <= len(data) for part in found)
