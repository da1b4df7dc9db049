"""Every file that holds memory or a secret is root's alone, wherever it is written
(issue 24, items 6 and 8): layout segments, restored vmcores, an initrd holding a
private file from `initrd.extra_files`, and the shared compressed-archive cache.

On the code before: nobody read segments/01-initrd.bin (0644) and the restored
vmcore (0644, even under umask 077); an initrd with a 0600 extra file was 0644;
and the archive holding it was stored in the compressed cache.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

import zstandard

from builder.binfmt.flat import flat_block, flat_end, flat_header, restore_file
from builder.image.cache import decode_entry, default_cache_dir
from builder.image.outputs import write_outputs
from builder.image.pipeline import BuildResult, plan_build
from builder.kexec.crashinfo import capture_crash_info
from builder.kexec.layout import plan_layout
from builder.kexec.layout.document import write_layout
from builder.kexec.layout.inputs import read_build_outputs, read_iomem
from builder.recipe.parse import load_recipe
from tests.support import caches
from tests.support.paths import REPO
from tests.support.recipes import write_recipe
from tests.support.unprivileged import as_nobody, shared

__all__ = ["shared"]  # the fixture

# nobody tries to read a file; prints what happened.
READ = """
import sys
try:
    data = open(sys.argv[1], "rb").read()
except PermissionError:
    print("denied")
else:
    print(f"read {len(data)} bytes")
"""


def test_layout_segments_are_roots_alone(default_build: BuildResult, shared: Path) -> None:
    outdir = shared / "out"
    write_outputs(default_build, outdir)
    outputs = read_build_outputs(outdir)
    memory = read_iomem(REPO / "tests/data/iomem/qemu-q35-1g-crashkernel-192m.txt")
    write_layout(plan_layout(outputs, memory, None, arch=outputs.target_arch()), outdir)
    segments = sorted((outdir / "segments").iterdir())
    assert [path.name for path in segments][1] == "01-initrd.bin"
    assert (outdir / "segments").stat().st_mode & 0o777 == 0o700
    assert {path.stat().st_mode & 0o777 for path in segments} == {0o600}
    assert as_nobody(READ, str(segments[1])).strip() == "denied"


def test_a_restored_vmcore_is_roots_alone_whatever_the_umask(shared: Path) -> None:
    flat = shared / "vmcore.flat"
    flat.write_bytes(flat_header() + flat_block(0, b"memory of the crashed kernel") + flat_end())
    os.chmod(flat, 0o600)
    previous = os.umask(0o022)
    try:
        restore_file(flat, shared / "vmcore")
    finally:
        os.umask(previous)
    assert (shared / "vmcore").stat().st_mode & 0o777 == 0o600
    assert as_nobody(READ, str(shared / "vmcore")).strip() == "denied"


def _cache_entries_since(start: float) -> list[Path]:
    """The entries of the shared compressed cache written since `start`.

    Entries only: another test worker may be writing its own build's at this moment,
    through a temporary file that is renamed into an entry (whole) or removed.
    """
    found = []
    for path in caches.entries(default_cache_dir() / "compressed"):
        with contextlib.suppress(FileNotFoundError):  # a damaged one removed meanwhile
            if path.stat().st_mtime >= start:
                found.append(path)
    return found


def test_a_private_extra_file_makes_the_initrd_private_and_stays_out_of_the_cache(
    tmp_path: Path,
) -> None:
    secret = secrets.token_hex(32).encode()
    (tmp_path / "token").write_bytes(secret)
    os.chmod(tmp_path / "token", 0o600)
    recipe = write_recipe(
        tmp_path / "recipe.toml", {"initrd": {"extra_files": ["/etc/token=recipe:token"]}}
    )
    start = time.time() - 1
    result = plan_build(load_recipe(recipe))
    write_outputs(result, tmp_path / "out")
    assert (tmp_path / "out" / "initrd.img").stat().st_mode & 0o777 == 0o600
    for entry in _cache_entries_since(start):
        payload = decode_entry(entry.read_bytes())
        assert payload is not None, entry
        with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
            assert secret not in reader.read(), f"the secret is in the shared cache: {entry}"


def test_a_captured_sysfs_is_roots_alone(shared: Path) -> None:
    """vmcoreinfo holds the KASLR offset, crash_notes the addresses of kernel memory."""
    sysfs = REPO / "tests/data/sysfs/qemu-1g-crashkernel-192m"
    capture_crash_info(sysfs, shared / "sysfs")
    assert (shared / "sysfs").stat().st_mode & 0o777 == 0o700
    vmcoreinfo = shared / "sysfs/sys/kernel/vmcoreinfo"
    assert vmcoreinfo.is_file()
    assert as_nobody(READ, str(vmcoreinfo)).strip() == "denied"
