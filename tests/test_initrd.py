from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.errors import InitrdError
from builder.image.initrd import (
    LZ4_LEGACY_CHUNK,
    InitrdPlan,
    compress,
    compress_cached,
    diff_initrds,
    early_cpio,
    read_initrd,
    write_cpio,
)


def sample_plan() -> InitrdPlan:
    plan = InitrdPlan()
    plan.file("/init", b"#!/bin/sh\necho hi\n", 0o755)
    plan.file("/usr/lib/x/libx.so.1.0", b"\x7fELF" + bytes(range(256)) * 3)
    plan.symlink("/usr/lib/x/libx.so.1", "libx.so.1.0")
    plan.symlink("/bin/sh", "/bin/busybox")
    plan.file("/bin/busybox", b"busybox", 0o755)
    plan.chardev("/dev/console", 5, 1)
    plan.chardev("/dev/null", 1, 3, 0o666)
    return plan


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


def test_parents_come_first_and_order_is_stable() -> None:
    members = sample_plan().members()
    seen: set[str] = set()
    for member in members:
        parent = member.path.rsplit("/", 1)[0]
        assert parent == "" or parent in seen, member.path
        seen.add(member.path)
    assert write_cpio(members) == write_cpio(sample_plan().members())


def test_conflicting_member_is_an_error() -> None:
    plan = sample_plan()
    plan.file("/init", b"#!/bin/sh\necho hi\n", 0o755)  # the same again is fine
    with pytest.raises(InitrdError, match="/init: added twice with different contents"):
        plan.file("/init", b"other", 0o755)


def test_member_below_a_file_is_an_error() -> None:
    plan = sample_plan()
    with pytest.raises(InitrdError, match="parent /init is not a directory"):
        plan.file("/init/x", b"")


@pytest.mark.parametrize(
    ("method", "tool"),
    [
        ("zstd", ["zstd", "-dc"]),
        ("gzip", ["gzip", "-dc"]),
        ("xz", ["xz", "-dc"]),
        ("lz4", ["lz4", "-dc"]),
        ("none", ["cat"]),
    ],
)
def test_compressions_are_read_by_the_standard_tools(method: str, tool: list[str]) -> None:
    archive = write_cpio(sample_plan().members())
    compressed = compress(archive, method, 3)
    assert subprocess.run(tool, input=compressed, capture_output=True, check=True).stdout == archive
    assert [entry.path for entry in read_initrd(compressed)] == [
        member.path for member in sample_plan().members()
    ]


def test_reads_early_cpio_then_compressed_main() -> None:
    early_plan = InitrdPlan()
    early_plan.file("/kernel/x86/microcode/GenuineIntel.bin", b"ucode")
    early = write_cpio(early_plan.members())
    main = compress(write_cpio(sample_plan().members()), "zstd", 3)
    entries = read_initrd(early + main)
    assert entries[0].path == "/kernel"
    assert {entry.segment for entry in entries} == {0, 1}
    by_path = {entry.path: entry for entry in entries}
    assert by_path["/bin/sh"].target == "/bin/busybox"
    assert by_path["/dev/console"].rdev == (5, 1)


def test_corrupt_initrd_names_the_offset() -> None:
    archive = write_cpio(sample_plan().members())
    with pytest.raises(InitrdError, match=r"^byte 0: expected a cpio header"):
        read_initrd(b"garbage" + archive)
    with pytest.raises(InitrdError, match=r"^byte \d+: "):
        read_initrd(archive[:300])
    with pytest.raises(InitrdError, match="corrupt compressed data"):
        read_initrd(compress(archive, "gzip", 6)[:-40] + b"\x01" * 40)


def test_copy_from_keeps_symlink_chain(tmp_path: Path) -> None:
    from builder.image.sources import DirectoryRoot

    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/libz.so.1.2").write_bytes(b"z")
    (tmp_path / "usr/lib/libz.so.1").symlink_to("libz.so.1.2")
    (tmp_path / "lib").symlink_to("usr/lib")
    plan = InitrdPlan()
    plan.copy_from(DirectoryRoot(tmp_path), "/lib/libz.so.1")
    members = {member.path: member for member in plan.members()}
    assert members["/lib"].target == "usr/lib"
    assert members["/usr/lib/libz.so.1"].target == "libz.so.1.2"
    assert members["/usr/lib/libz.so.1.2"].data == b"z"


def test_lz4_is_the_kernels_legacy_format_in_8_mib_chunks() -> None:
    plan = sample_plan()
    plan.file("/big", bytes(range(256)) * (LZ4_LEGACY_CHUNK // 256 + 1000))
    archive = write_cpio(plan.members())
    compressed = compress(archive, "lz4", 9)
    # lib/decompress_unlz4.c: magic 0x184C2102 little-endian, then (size, block) chunks.
    assert compressed[:4] == bytes.fromhex("02214c18")
    first = int.from_bytes(compressed[4:8], "little")
    second = int.from_bytes(compressed[8 + first : 12 + first], "little")
    assert 12 + first + second == len(compressed)
    assert subprocess.run(["lz4", "-dc"], input=compressed, capture_output=True).stdout == archive
    assert read_initrd(compressed)[-1].path == "/usr/lib/x/libx.so.1.0"


def test_early_microcode_cpio_read_by_gnu_cpio_and_inspect() -> None:
    early = early_cpio({"/kernel/x86/microcode/GenuineIntel.bin": b"A" * 5 + b"B" * 7}, 7)
    main = compress(write_cpio(sample_plan().members()), "lz4", 9)
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


def test_compressed_output_cache_gives_the_same_bytes(tmp_path: Path) -> None:
    archive = write_cpio(sample_plan().members())
    fresh = compress(archive, "zstd", 19)
    assert compress_cached(archive, "zstd", 19, tmp_path) == fresh  # computed and stored
    (stored,) = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert stored.read_bytes() == fresh
    assert compress_cached(archive, "zstd", 19, tmp_path) == fresh  # read back
    assert compress_cached(archive, "zstd", 18, tmp_path) == compress(archive, "zstd", 18)


def test_diff_added_removed_changed() -> None:
    before = read_initrd(write_cpio(sample_plan().members()))
    plan = sample_plan()
    plan.file("/etc/new", b"new")
    after_plan = InitrdPlan()
    for member in plan.members():
        if member.path == "/init":
            after_plan.file("/init", b"#!/bin/sh\necho bye\n", 0o700)
        elif member.path != "/bin/busybox":
            after_plan.add(member)
    changes = diff_initrds(before, read_initrd(write_cpio(after_plan.members())))
    summary = {change.path: (change.status, change.details()) for change in changes}
    assert summary == {
        "/bin/busybox": ("removed", []),
        "/etc": ("added", []),
        "/etc/new": ("added", []),
        "/init": ("changed", ["mode 100755 -> 100700", "size 18 -> 19"]),
    }
