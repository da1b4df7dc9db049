"""builder.atomic: outputs replaced whole, never over what kdump-build did not make.

The old write_outputs (0b3a481, builder/build.py) renamed whatever was at the
output path aside and deleted it; every refusal below would have been a
deleted user directory there, and a kill between its two renames left no
output at all.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder import atomic
from builder.atomic import (
    MARKER,
    MARKER_TEXT,
    STAGING_INFIX,
    write_new_file,
)
from builder.errors import OutputError
from builder.image.outputs import LEGACY_OUTPUT
from tests.support import kills, recipes
from tests.support.paths import DEFAULT_RECIPE


def replace_directory(outdir: Path, fill: Callable[[Path], None]) -> None:
    """As a build writes its output (it knows its outputs from before the marker)."""
    atomic.replace_directory(outdir, fill, legacy=LEGACY_OUTPUT)


def remove_leftovers(outdir: Path) -> None:
    atomic.remove_leftovers(outdir, LEGACY_OUTPUT)


def foreign_entry(path: Path) -> str | None:
    return atomic.foreign_entry(path, LEGACY_OUTPUT)


def _fill_with(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    def fill(staging: Path) -> None:
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)

    return fill


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _ours(outdir: Path, **files: bytes) -> Path:
    outdir.mkdir()
    (outdir / MARKER).write_bytes(MARKER_TEXT)
    for name, data in files.items():
        (outdir / name).write_bytes(data)
    return outdir


def test_new_directory_is_created_with_the_marker(tmp_path: Path) -> None:
    outdir = tmp_path / "deep" / "out"
    replace_directory(outdir, _fill_with({"vmlinuz": b"new"}))
    assert _names(outdir) == [MARKER, "vmlinuz"]
    # The marker's first line, then the inventory of what the run wrote.
    assert (outdir / MARKER).read_bytes() == MARKER_TEXT + b"vmlinuz\n"
    assert outdir.stat().st_mode & 0o777 == 0o755
    assert _names(outdir.parent) == ["out"]


def test_our_output_is_replaced_whole(tmp_path: Path) -> None:
    outdir = _ours(tmp_path / "out", vmlinuz=b"old", **{"fit.json": b"{}"})
    inode = outdir.stat().st_ino
    replace_directory(outdir, _fill_with({"vmlinuz": b"new"}))
    assert _names(outdir) == [MARKER, "vmlinuz"]
    assert (outdir / "vmlinuz").read_bytes() == b"new"
    assert outdir.stat().st_ino != inode  # a new directory, not edited in place
    assert _names(tmp_path) == ["out"]


def test_empty_directory_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    replace_directory(tmp_path / "out", _fill_with({"vmlinuz": b"new"}))
    assert _names(tmp_path / "out") == [MARKER, "vmlinuz"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("user-dir", "holds files kdump-build did not write; refusing to replace it (found a.txt"),
        ("user-file-in-ours", "(found notes.txt;"),
        ("user-subdir-in-ours", "(found photos;"),
        ("symlink-in-segments", "(found segments/00-kernel.bin;"),
        ("regular-file", "exists and is not a directory; refusing"),
        ("symlink", "is a symbolic link; give the directory itself"),
    ],
)
def test_what_the_user_made_is_refused_and_untouched(
    tmp_path: Path, setup: str, message: str
) -> None:
    outdir = tmp_path / "out"
    if setup == "user-dir":
        outdir.mkdir()
        (outdir / "a.txt").write_text("mine")
    elif setup == "user-file-in-ours":
        _ours(outdir, vmlinuz=b"old", **{"notes.txt": b"mine"})
    elif setup == "user-subdir-in-ours":
        _ours(outdir, vmlinuz=b"old")
        (outdir / "photos").mkdir()
        (outdir / "photos" / "cat.jpg").write_bytes(b"mine")
    elif setup == "symlink-in-segments":
        _ours(outdir)
        (outdir / "segments").mkdir()
        (outdir / "segments" / "00-kernel.bin").symlink_to("/etc/passwd")
    elif setup == "regular-file":
        outdir.write_text("mine")
    else:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "a.txt").write_text("mine")
        outdir.symlink_to("elsewhere")
    before = kills.tree_digest(tmp_path)
    with pytest.raises(OutputError, match=None) as raised:
        replace_directory(outdir, _fill_with({"vmlinuz": b"new"}))
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert kills.tree_digest(tmp_path) == before


def test_legacy_output_is_recognised_by_its_manifest(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "manifest.json").write_text('{"recipe": 1, "kernel": 1, "initrd": 1, "members": []}')
    (outdir / "vmlinuz").write_bytes(b"old")
    replace_directory(outdir, _fill_with({"vmlinuz": b"new"}))
    assert (outdir / "vmlinuz").read_bytes() == b"new"
    # Someone else's manifest.json is not ours.
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"name": "my web app"}')
    with pytest.raises(OutputError, match="did not write"):
        replace_directory(other, _fill_with({"vmlinuz": b"new"}))
    assert _names(other) == ["manifest.json"]


def test_failure_in_fill_leaves_the_old_output_and_no_staging(tmp_path: Path) -> None:
    outdir = _ours(tmp_path / "out", vmlinuz=b"old")

    def failing(staging: Path) -> None:
        (staging / "vmlinuz").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(staging / "vmlinuz"))

    with pytest.raises(OutputError, match=r"vmlinuz: No space left on device$"):
        replace_directory(outdir, failing)
    assert (outdir / "vmlinuz").read_bytes() == b"old"
    assert _names(tmp_path) == ["out"]


def _leftover(parent: Path, suffix: str, *, marker: bool, files: dict[str, bytes]) -> Path:
    leftover = parent / f".out{STAGING_INFIX}{suffix}"
    leftover.mkdir()
    if marker:
        (leftover / MARKER).write_bytes(MARKER_TEXT)
    for name, data in files.items():
        (leftover / name).write_bytes(data)
    return leftover


def test_leftovers_of_ours_are_removed_and_nothing_else(tmp_path: Path) -> None:
    _ours(tmp_path / "out", vmlinuz=b"old")
    _leftover(tmp_path, "killed", marker=True, files={"initrd.img": b"half"})
    _leftover(tmp_path, "empty", marker=False, files={})  # killed before its marker
    stranger = _leftover(tmp_path, "unmarked", marker=False, files={"a.txt": b"mine"})
    (tmp_path / "out.kdump-build-staging.notours").mkdir()  # no leading dot: not our name
    remove_leftovers(tmp_path / "out")
    assert _names(tmp_path) == sorted(["out", "out.kdump-build-staging.notours", stranger.name])
    assert (stranger / "a.txt").read_bytes() == b"mine"


def test_staging_marker_goes_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed while removing a staging directory leaves one the next run still knows."""
    leftover = _leftover(tmp_path, "x", marker=True, files={"a": b"1", "b": b"2"})
    removed: list[str] = []
    real_unlink = os.unlink

    def unlink(path: str, *, dir_fd: int | None = None) -> None:
        removed.append(path)
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    atomic.remove_staging(leftover)
    assert removed == ["a", "b", MARKER]
    assert not leftover.exists()


def test_without_rename_exchange_the_swap_still_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = atomic._renameat2

    def no_exchange(source: Path, target: Path, flags: int) -> None:
        if flags == atomic._RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "Invalid argument")
        real(source, target, flags)

    monkeypatch.setattr(atomic, "_renameat2", no_exchange)
    outdir = _ours(tmp_path / "out", vmlinuz=b"old")
    replace_directory(outdir, _fill_with({"vmlinuz": b"new"}))
    assert (outdir / "vmlinuz").read_bytes() == b"new"
    assert _names(tmp_path) == ["out"]


def test_interrupted_fallback_swap_is_put_back(tmp_path: Path) -> None:
    """Killed between the two renames of the fallback: the next run restores the old output."""
    aside = _leftover(tmp_path, "aside", marker=True, files={})
    _ours(aside / "previous", vmlinuz=b"old")
    _leftover(tmp_path, "new", marker=True, files={"vmlinuz": b"new"})
    remove_leftovers(tmp_path / "out")
    assert _names(tmp_path) == ["out"]
    assert (tmp_path / "out" / "vmlinuz").read_bytes() == b"old"


@pytest.mark.parametrize("added", ["notes.txt", "segments/notes.txt", "segments/sub/"])
def test_anything_added_to_an_inventoried_output_is_refused(tmp_path: Path, added: str) -> None:
    outdir = tmp_path / "out"
    files = {"vmlinuz": b"1", "extra-from-a-later-version.json": b"2", "segments/00-x.bin": b""}
    replace_directory(outdir, _fill_with(files))
    replace_directory(outdir, _fill_with(files))  # what the inventory lists is ours, any name
    if added.endswith("/"):
        (outdir / added).mkdir()
    else:
        (outdir / added).write_text("mine")
    before = kills.tree_digest(tmp_path)
    with pytest.raises(OutputError, match=f"found {added}"):
        replace_directory(outdir, _fill_with({"vmlinuz": b"new"}))
    assert kills.tree_digest(tmp_path) == before


def test_foreign_entry_names_what_is_not_ours(tmp_path: Path) -> None:
    outdir = _ours(tmp_path / "out", vmlinuz=b"")
    (outdir / "segments").mkdir()
    (outdir / "segments" / "00-kernel.bin").write_bytes(b"")
    assert foreign_entry(outdir) is None
    (outdir / "segments" / "sub").mkdir()
    assert foreign_entry(outdir) == "segments/sub"


def test_write_new_file_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "vmcore"
    write_new_file(target, [b"abc", b"def"], mode=0o600)
    assert target.read_bytes() == b"abcdef" and target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(OutputError, match="already exists; refusing to overwrite it"):
        write_new_file(target, [b"other"])
    assert target.read_bytes() == b"abcdef"
    (tmp_path / "link").symlink_to("nowhere")
    with pytest.raises(OutputError, match="already exists"):
        write_new_file(tmp_path / "link", [b"x"])
    assert _names(tmp_path) == ["link", "vmcore"]


def test_write_new_file_cleans_its_own_leftovers_only(tmp_path: Path) -> None:
    (tmp_path / f".vmcore{STAGING_INFIX}killed").write_bytes(b"half")
    (tmp_path / f".other{STAGING_INFIX}killed").write_bytes(b"someone else's")
    write_new_file(tmp_path / "vmcore", [b"whole"])
    assert _names(tmp_path) == [f".other{STAGING_INFIX}killed", "vmcore"]


def test_write_new_file_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write there \(No such file or directory\)"):
        write_new_file(tmp_path / "missing" / "vmcore", [b"x"])


# ---------------------------------------------------------------------------
# SIGKILL at random moments


# Names an output of ours may hold, so each generation replaces the last.
NAMES = ("initrd.img", "vmlinuz", "cmdline.txt", "manifest.json", "fit.json", "layout.json")


def _generation(generation: int) -> dict[str, bytes]:
    return {name: _content(generation, index) for index, name in enumerate(NAMES)}


def _writer(outdir: str, generation: int) -> None:
    """Child process: replace `outdir` again and again with numbered generations."""
    while True:
        replace_directory(Path(outdir), _fill_with(_generation(generation)))
        generation += 1


def _content(generation: int, index: int) -> bytes:
    return hashlib.sha256(f"{generation}:{index}".encode()).digest() * 16384  # 512 KiB


def _generation_of(outdir: Path) -> int | None:
    """Which complete generation `outdir` holds, or None if it is not one."""
    if _names(outdir) != sorted([MARKER, *NAMES]):
        return None
    first = (outdir / NAMES[0]).read_bytes()
    generation = next((n for n in range(100_000) if _content(n, 0) == first), None)
    if generation is None:
        return None
    files = _generation(generation)
    return generation if all((outdir / n).read_bytes() == files[n] for n in NAMES) else None


def test_sigkill_during_replacement_leaves_a_whole_generation(tmp_path: Path) -> None:
    """20 kills of a process that rewrites the output in a loop: always one whole generation."""
    outdir = tmp_path / "out"
    replace_directory(outdir, _fill_with(_generation(0)))
    rng = random.Random(11)
    context = multiprocessing.get_context("fork")
    mid_write = 0
    for _ in range(20):
        child = context.Process(target=_writer, args=(str(outdir), 1))
        child.start()
        time.sleep(rng.uniform(0.02, 0.2))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        mid_write += any(STAGING_INFIX in name for name in _names(tmp_path))
        assert _generation_of(outdir) is not None, _names(outdir)
    assert mid_write > 0  # some kills did land while a staging directory existed
    replace_directory(outdir, _fill_with(_generation(0)))
    assert _names(tmp_path) == ["out"]


def test_sigkill_of_real_builds_and_layouts(tmp_path: Path) -> None:
    """A few kills of real `kdump-build build` and `layout` processes (the long campaign:
    `python -m bench.sigkill_campaign`)."""
    variant = recipes.write_recipe(
        tmp_path / "variant.toml", {"initrd": {"compression": "lz4", "compression_level": 9}}
    )
    tally = kills.campaign(tmp_path / "work", [DEFAULT_RECIPE, variant], 6, seed=5,
                           cleanup_every=3)  # fmt: skip
    assert tally.failures == []
    assert tally.kills == 6 and tally.outcomes["BROKEN"] == 0
    assert tally.moments[kills.Moment.WHILE_STAGING.value] > 0, tally
