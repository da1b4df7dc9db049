"""Shared-library closure: real Debian binaries, and binaries built here with gcc."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.errors import SourceError
from builder.image.libraries import library_closure, read_elf_info
from builder.image.packages import PackageRoot
from builder.image.sources import DirectoryRoot


def test_makedumpfile_closure(default_root: PackageRoot, tmp_path: Path) -> None:
    closure = library_closure(default_root, ["/usr/bin/makedumpfile"], "x86_64", "k")
    names = {path.rsplit("/", 1)[1] for path in closure}
    # binutils' readelf on the same binary is the independent source of its direct needs.
    binary = tmp_path / "makedumpfile"
    binary.write_bytes(default_root.read_bytes("/usr/bin/makedumpfile"))
    dynamic = subprocess.run(["readelf", "-d", "-W", str(binary)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    assert needed and needed <= names
    assert "ld-linux-x86-64.so.2" in names
    assert "libelf.so.1" in names  # needed by libdw, not by makedumpfile itself


def test_static_busybox_has_no_closure(default_root: PackageRoot) -> None:
    assert library_closure(default_root, ["/bin/busybox"], "x86_64", "k") == []


def test_wrong_architecture(default_root: PackageRoot) -> None:
    with pytest.raises(SourceError, match=r"is built for x86_64 \(e_machine 62\), not aarch64$"):
        library_closure(default_root, ["/bin/busybox"], "aarch64", "initrd.binaries")


@pytest.fixture()
def sysroot(tmp_path: Path) -> Path:
    """A sysroot with a program whose library is found through RUNPATH=$ORIGIN/../lib/app."""
    root = tmp_path / "root"
    (root / "opt/app/bin").mkdir(parents=True)
    (root / "opt/app/lib/app").mkdir(parents=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "greet.c").write_text("int greet(void) { return 42; }\n")
    (src / "main.c").write_text("int greet(void);\nint main(void) { return greet(); }\n")
    library = root / "opt/app/lib/app/libgreet.so.1"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-Wl,-soname,libgreet.so.1",
            "-o",
            str(library),
            str(src / "greet.c"),
        ],
        check=True,
    )
    subprocess.run(
        [
            "gcc",
            "-o",
            str(root / "opt/app/bin/main"),
            str(src / "main.c"),
            f"-L{library.parent}",
            "-l:libgreet.so.1",
            "-Wl,--enable-new-dtags",
            "-Wl,-rpath,$ORIGIN/../lib/app",
        ],
        check=True,
    )
    # The C library and loader come from the host here; the sysroot is what is searched.
    for host_path in ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"):
        real = Path(host_path).resolve()
        target = root / host_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(real, target)
    return root


def test_runpath_origin(sysroot: Path) -> None:
    info = read_elf_info((sysroot / "opt/app/bin/main").read_bytes(), "main")
    assert info is not None and info.runpath == ("$ORIGIN/../lib/app",)
    closure = library_closure(DirectoryRoot(sysroot), ["/opt/app/bin/main"], "x86_64", "k")
    assert "/opt/app/bin/../lib/app/libgreet.so.1" in closure
    assert "/lib64/ld-linux-x86-64.so.2" in closure
    assert "/lib/x86_64-linux-gnu/libc.so.6" in closure


def test_missing_library_names_it(sysroot: Path) -> None:
    (sysroot / "opt/app/lib/app/libgreet.so.1").unlink()
    with pytest.raises(SourceError) as caught:
        library_closure(DirectoryRoot(sysroot), ["/opt/app/bin/main"], "x86_64", "initrd.binaries")
    assert str(caught.value).startswith(
        "initrd.binaries: libgreet.so.1, needed by /opt/app/bin/main (for /opt/app/bin/main), "
        "is not in"
    )


def test_elf_facts_are_cached_by_contents(default_root: PackageRoot, tmp_path: Path) -> None:
    binary = default_root.read_bytes("/usr/bin/makedumpfile")
    parsed = read_elf_info(binary, "makedumpfile")
    assert read_elf_info(binary, "makedumpfile", tmp_path) == parsed
    (cached,) = tmp_path.iterdir()
    assert read_elf_info(binary, "makedumpfile", tmp_path) == parsed  # read from the cache
    closure = library_closure(default_root, ["/usr/bin/makedumpfile"], "x86_64", "k")
    assert library_closure(default_root, ["/usr/bin/makedumpfile"], "x86_64", "k", tmp_path) == (
        closure
    )
    # A damaged cache entry is ignored and rewritten.
    cached.write_text('{"machine": 62')
    assert read_elf_info(binary, "makedumpfile", tmp_path) == parsed
    assert read_elf_info(binary, "makedumpfile", tmp_path) == parsed
    # Not ELF: nothing cached, nothing parsed.
    assert read_elf_info(b"#!/bin/sh\n", "script", tmp_path) is None
    # A corrupt ELF file is still refused, and not cached.
    with pytest.raises(SourceError, match=r"^broken: byte 0x4: expected ELFCLASS32 or ELFCLASS64"):
        read_elf_info(b"\x7fELF" + b"\xff" * 60, "broken", tmp_path / "other")
    assert not (tmp_path / "other").exists()
