"""Initrd plans: members, parents, conflicts, and the compressed-archive cache."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import lz4
import pytest
import zstandard

from builder.binfmt.cpio import write_cpio
from builder.compression import Compression, compress
from builder.errors import InitrdError
from builder.image.cache import decode_entry, load_cache_entry
from builder.image.initrd import InitrdPlan, compress_cached
from tests.support.initrds import sample_plan


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


def test_compressed_output_cache_gives_the_same_bytes(tmp_path: Path) -> None:
    archive = write_cpio(sample_plan().members())
    zstd = Compression.ZSTD
    fresh = compress(archive, zstd, 19)
    assert compress_cached(archive, zstd, 19, tmp_path) == fresh  # computed and stored
    (stored,) = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert decode_entry(stored.read_bytes()) == fresh
    assert compress_cached(archive, zstd, 19, tmp_path) == fresh  # read back
    assert compress_cached(archive, zstd, 18, tmp_path) == compress(archive, zstd, 18)


@pytest.mark.parametrize(
    ("method", "version"),
    [(Compression.ZSTD, "zstd-"), (Compression.GZIP, "zlib-"), (Compression.XZ, "xz"),
     (Compression.LZ4, "lz4-")],
)  # fmt: skip
def test_compressed_cache_key_is_unchanged(
    tmp_path: Path, method: Compression, version: str
) -> None:
    """The key text is sha:method:level:version; the entry holds the compressed bytes."""
    archive = write_cpio(sample_plan().members())
    compress_cached(archive, method, 3, tmp_path)
    library = {
        Compression.ZSTD: f"zstd-{zstandard.ZSTD_VERSION}",
        Compression.GZIP: f"zlib-{zlib.ZLIB_RUNTIME_VERSION}",
        Compression.XZ: "xz",
        Compression.LZ4: f"lz4-{lz4.library_version_string()}",
    }[method]
    assert library.startswith(version)
    text = f"{hashlib.sha256(archive).hexdigest()}:{method.value}:3:{library}"
    key = hashlib.sha256(text.encode()).hexdigest()
    assert load_cache_entry(tmp_path / key[:2] / key) == compress(archive, method, 3)
