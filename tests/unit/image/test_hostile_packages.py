"""Hostile packages (.tar.gz, .tar.xz, .deb, .rpm): refused with one line, or contained.

Each package is built here byte by byte (tests/support/packages.py). Refused:
a `..` member, a hard link to what the package does not hold, one path twice
with different contents, a truncated archive, a member or a package that
expands to gigabytes. Contained: absolute names and symlinks (the package's
own root), symlink chains out and loops (refused when followed), device
nodes (never read), set-id bits (not in the initrd). Nothing is written
outside the cache and the output, and memory stays bounded on the bombs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import SourceError
from builder.image.initrd import InitrdPlan
from builder.image.packages import PackageCache, PackageRoot
from builder.image.sources import NodeKind
from tests.support import caches, kills
from tests.support.packages import (
    Entry,
    Kind,
    measure_bomb,
    write_bomb,
    write_deb,
    write_rpm,
    write_tar,
)

Writer = Callable[[Path, list[Entry]], Path]
FORMATS: dict[str, Writer] = {
    "tar.gz": lambda path, entries: write_tar(path.with_suffix(".tar.gz"), entries),
    "tar.xz": lambda path, entries: write_tar(path.with_suffix(".tar.xz"), entries),
    "deb": lambda path, entries: write_deb(path.with_suffix(".deb"), entries),
    "rpm": lambda path, entries: write_rpm(path.with_suffix(".rpm"), entries),
}
TOOL = Entry("./usr/bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755)
DIRS = [Entry("./usr/", kind=Kind.DIR, mode=0o755), Entry("./usr/bin/", kind=Kind.DIR, mode=0o755)]


def _package(tmp_path: Path, fmt: str, entries: list[Entry]) -> Path:
    return FORMATS[fmt](tmp_path / "hostile", entries)


def _refused(package: Path, *fragments: str) -> str:
    with pytest.raises(SourceError) as raised:
        PackageRoot([package], PackageCache(package.parent / "cache"))
    message = str(raised.value)
    assert message.startswith(str(package)) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    # Refused before anything of it was cached.
    assert not list((package.parent / "cache").rglob("index.json*"))
    return message


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "name", ["./usr/../../../escape", "../escape", "usr/bin/../../../../etc/cron.d/x"]
)
def test_dotdot_member_is_refused(tmp_path: Path, fmt: str, name: str) -> None:
    package = _package(tmp_path, fmt, [*DIRS, Entry(name, b"pwned")])
    _refused(package, f"member {name!r} leads outside the package ('..')")


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.xz", "deb"])  # cpio links by inode, not name
@pytest.mark.parametrize(("target", "fragment"), [
    ("../../etc/passwd", "hard link target '../../etc/passwd' leads outside"),
    ("/etc/passwd", "hard link /usr/bin/tool to missing /etc/passwd"),
])  # fmt: skip
def test_hard_link_to_outside_is_refused(
    tmp_path: Path, fmt: str, target: str, fragment: str
) -> None:
    entry = Entry("./usr/bin/tool", kind=Kind.HARDLINK, target=target)
    _refused(_package(tmp_path, fmt, [*DIRS, entry]), fragment)


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_path_with_other_contents_is_refused(tmp_path: Path, fmt: str) -> None:
    entries = [*DIRS, TOOL, Entry("./usr/bin/tool", b"#!/bin/sh\nrm -rf /\n", mode=0o755)]
    _refused(_package(tmp_path, fmt, entries), "/usr/bin/tool is in the package twice")
    # The same member twice, byte for byte, is only redundant.
    (tmp_path / "same").mkdir()
    same = _package(tmp_path / "same", fmt, [*DIRS, TOOL, TOOL])
    assert PackageRoot([same]).read_bytes("/usr/bin/tool") == TOOL.data


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_archive_is_refused(tmp_path: Path, fmt: str, fraction: float) -> None:
    import os

    files = [Entry(f"./usr/bin/tool{i}", os.urandom(30_000), mode=0o755) for i in range(4)]
    package = _package(tmp_path, fmt, [*DIRS, *files])
    data = package.read_bytes()
    package.write_bytes(data[: int(len(data) * fraction)])
    _refused(package, "not a readable package archive")


@pytest.fixture
def formats_dirs(tmp_path: Path) -> Path:
    for fmt in FORMATS:
        (tmp_path / fmt).mkdir()
    return tmp_path


def test_absolute_names_and_symlinks_mean_the_packages_root(formats_dirs: Path) -> None:
    """/etc/hostname exists on this host; the package's own root decides what it is."""
    entries = [
        *DIRS,
        Entry("/etc/kdb-absolute-member", b"inside the package"),
        Entry("./usr/bin/host-name", kind=Kind.SYMLINK, target="/etc/hostname"),
        Entry("./usr/bin/own", kind=Kind.SYMLINK, target="/etc/kdb-absolute-member"),
    ]
    for fmt in FORMATS:
        root = PackageRoot([_package(formats_dirs / fmt, fmt, entries)])
        assert root.read_bytes("/usr/bin/own") == b"inside the package"
        assert not root.exists("/usr/bin/host-name")  # not the host's /etc/hostname
        with pytest.raises(SourceError, match=r"not found \(/etc/hostname is missing\)"):
            root.read_bytes("/usr/bin/host-name")


def test_symlink_chains_out_and_loops_are_refused_when_followed(formats_dirs: Path) -> None:
    entries = [
        *DIRS,
        Entry("./usr/bin/a", kind=Kind.SYMLINK, target="b"),
        Entry("./usr/bin/b", kind=Kind.SYMLINK, target="../c"),
        Entry("./usr/c", kind=Kind.SYMLINK, target="../../../../../../etc/shadow"),
        Entry("./usr/bin/loop1", kind=Kind.SYMLINK, target="loop2"),
        Entry("./usr/bin/loop2", kind=Kind.SYMLINK, target="/usr/bin/loop1"),
    ]
    for fmt in FORMATS:
        root = PackageRoot([_package(formats_dirs / fmt, fmt, entries)])
        with pytest.raises(SourceError, match=r"symlink /usr/c -> \.\./\.\..* leads outside"):
            root.read_bytes("/usr/bin/a")
        with pytest.raises(SourceError, match="too many levels of symlinks"):
            root.read_bytes("/usr/bin/loop1")


def test_device_nodes_are_never_read_and_set_id_bits_never_reach_the_initrd(
    formats_dirs: Path,
) -> None:
    entries = [
        *DIRS,
        Entry("./dev/", kind=Kind.DIR, mode=0o755),
        Entry("./dev/sda", kind=Kind.BLOCKDEV, rdev=(8, 0), mode=0o660),
        Entry("./dev/mem", kind=Kind.CHARDEV, rdev=(1, 1), mode=0o640),
        Entry("./dev/fifo", kind=Kind.FIFO, mode=0o600),
        Entry("./usr/bin/tool", b"\x7fELF...", mode=0o6755),
        Entry("./usr/bin/sticky", b"data", mode=0o1755),
    ]
    for fmt in FORMATS:
        root = PackageRoot([_package(formats_dirs / fmt, fmt, entries)])
        for device in ("/dev/sda", "/dev/mem", "/dev/fifo"):
            assert root.lookup(device).kind is NodeKind.OTHER
            with pytest.raises(SourceError, match="not a regular file"):
                root.read_bytes(device)
        plan = InitrdPlan()
        plan.copy_from(root, "/usr/bin/tool")
        plan.copy_from(root, "/usr/bin/sticky")
        modes = {member.path: member.mode for member in plan.members()}
        assert modes["/usr/bin/tool"] == 0o755 and modes["/usr/bin/sticky"] == 0o755, fmt


# ---------------------------------------------------------------------------
# Decompression bombs, measured in a fresh interpreter

GiB = 1 << 30
MiB = 1 << 20


@pytest.mark.parametrize("fmt", ["tar.gz", "deb", "rpm"])
def test_member_that_expands_to_gigabytes_is_refused_in_bounded_memory(
    tmp_path: Path, fmt: str
) -> None:
    size = 3 * GiB + 512 * MiB if fmt == "rpm" else 8 * GiB  # newc sizes stop at 4 GiB
    bomb = write_bomb(tmp_path / "bomb", fmt, [("zeros", size)])
    assert bomb.stat().st_size < 10 * MiB
    measured = measure_bomb(bomb)
    assert f"{size} bytes, more than a member may hold" in str(measured["outcome"])
    grown = int(str(measured["peak_kib"])) - int(str(measured["before_kib"]))
    assert grown < 64 * 1024, measured  # refused on the header: nothing of it was read


@pytest.mark.parametrize("fmt", ["tar.gz", "deb", "rpm"])
def test_package_that_expands_beyond_its_limit_is_refused_in_bounded_memory(
    tmp_path: Path, fmt: str
) -> None:
    """Sixteen members of 16 MiB under a limit of 64 MiB (the real one is 2 GiB:
    `python -m bench.package_bombs` measures that)."""
    bomb = write_bomb(tmp_path / "bomb", fmt, [(f"zeros{i}", 16 * MiB) for i in range(16)])
    measured = measure_bomb(bomb, 64 * MiB)
    assert "the package expands beyond 64 MiB" in str(measured["outcome"])
    grown = int(str(measured["peak_kib"])) - int(str(measured["before_kib"]))
    assert grown < (64 + 48) * 1024, measured


# ---------------------------------------------------------------------------
# Whole builds: nothing written outside the cache and the output


def test_hostile_build_writes_nothing_outside_cache_and_output(tmp_path: Path) -> None:
    """A recipe adds a hostile .deb to the small kernel's: one line, and nothing escapes."""
    work = tmp_path / "work"
    work.mkdir()
    kernel = caches.small_kernel_package(work / "kernel.tar.gz")
    hostile = write_deb(work / "hostile.deb", [
        *DIRS,
        Entry("./usr/../../canary-dotdot", b"escaped"),
        Entry("/" + str(tmp_path / "canary-absolute").lstrip("/"), b"escaped"),
    ])  # fmt: skip
    recipe = caches.small_recipe(work / "recipe.toml", kernel, {})
    text = recipe.read_text().replace(
        f'package_files = ["{kernel}"]', f'package_files = ["{kernel}", "{hostile}"]'
    )
    recipe.write_text(text)
    cache = caches.private_cache(tmp_path / "cache")
    before = kills.tree_digest(work)
    result = subprocess.run(
        [sys.executable, "-m", "builder.cli", str(recipe), "-o", str(tmp_path / "out")],
        cwd=work, env={**_environment(), "KDUMP_BUILD_CACHE": str(cache)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"kdump-build: error: {hostile}: member './usr/../../canary-dotdot' leads outside "
        "the package ('..')"
    ]
    assert kills.tree_digest(work) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "work"]


def _environment() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_the_package_writers_agree_with_dpkg_deb_and_rpm2cpio(tmp_path: Path) -> None:
    """The .deb and .rpm containers written here are what Debian's and rpm's tools read."""
    entries = [*DIRS, TOOL, Entry("./usr/bin/link", kind=Kind.SYMLINK, target="tool")]
    deb = write_deb(tmp_path / "ok.deb", entries)
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert [line.split()[-1] for line in listing.splitlines()] == [
        "./usr/", "./usr/bin/", "./usr/bin/tool", "tool"
    ]  # fmt: skip
    rpm = write_rpm(tmp_path / "ok.rpm", entries)
    cpio = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    names = subprocess.run(["cpio", "-it"], input=cpio, capture_output=True, check=True).stdout
    assert names.decode().split() == ["./usr/", "./usr/bin/", "./usr/bin/tool", "./usr/bin/link"]
    for package in (deb, rpm):
        root = PackageRoot([package])
        assert root.read_bytes("/usr/bin/link") == TOOL.data
        assert root.lookup("/usr/bin/tool").mode == 0o755
