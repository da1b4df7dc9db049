"""builder.atomic against a local user: planted staging directories, and two runs at once.

Issue 24 items 3 and 4. On the code before (atomic.py cleaning staging
directories by path, no lock), the first test deleted root's file through the
symlink nobody swapped in, and the second one's first run failed because the
second run cleaned its live staging directory away.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import atomic
from builder.atomic import MARKER, MARKER_TEXT, STAGING_INFIX
from builder.image.outputs import LEGACY_OUTPUT
from tests.support import unprivileged
from tests.support.unprivileged import as_nobody, shared

__all__ = ["shared"]  # the fixture

# nobody's step: put their look-alike staging directory aside and a symlink to root's
# directory in its place (what a racing attacker does between root's checks and removal).
SWAP = """
import os, sys
staging, victim = sys.argv[1], sys.argv[2]
os.rename(staging, staging + ".aside")
os.symlink(victim, staging)
"""
PLANT = """
import os, sys
staging = sys.argv[1]
os.mkdir(staging)
open(os.path.join(staging, ".kdump-build"), "wb").write(sys.argv[2].encode())
open(os.path.join(staging, "precious"), "wb").write(b"planted")
"""


def test_a_planted_staging_directory_swapped_for_a_symlink_deletes_nothing_of_roots(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_bytes(b"root's")
    (victim / MARKER).write_bytes(b"root's marker")
    staging = shared / f".out{STAGING_INFIX}planted"
    as_nobody(PLANT, str(staging), MARKER_TEXT.decode())

    # The attacker wins the race deterministically: right after root lists the planted
    # directory (through whatever call the code uses), nobody swaps it for a symlink.
    swapped: list[bool] = []
    real_iterdir, real_listdir = Path.iterdir, os.listdir

    def swap_once(listed: object) -> None:
        if not swapped and str(listed).startswith(str(staging)):
            swapped.append(True)
            as_nobody(SWAP, str(staging), str(victim))

    def iterdir(path: Path) -> Iterator[Path]:
        entries = list(real_iterdir(path))
        swap_once(path)
        return iter(entries)

    def listdir(path: int | str = ".") -> list[str]:
        entries = real_listdir(path)
        if isinstance(path, int):
            swap_once(os.readlink(f"/proc/self/fd/{path}"))
        return entries

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(os, "listdir", listdir)
    atomic.replace_directory(shared / "out", lambda staging: None, legacy=LEGACY_OUTPUT)
    monkeypatch.undo()

    assert (victim / "precious").read_bytes() == b"root's"
    assert (victim / MARKER).read_bytes() == b"root's marker"
    # nobody's directory is not root's to clean: it stays, whoever made it.
    assert (staging / "precious").read_bytes() == b"planted"
    assert (shared / "out").is_dir()


def test_a_staging_directory_root_owns_but_others_may_write_is_left_alone(tmp_path: Path) -> None:
    leftover = tmp_path / f".out{STAGING_INFIX}open"
    leftover.mkdir()
    (leftover / MARKER).write_bytes(MARKER_TEXT)
    os.chmod(leftover, 0o777)  # anyone could have put anything in it
    atomic.remove_leftovers(tmp_path / "out", LEGACY_OUTPUT)
    assert (leftover / MARKER).is_file()


def _slow_build(outdir: str, ready: str, payload: bytes) -> None:
    def fill(staging: Path) -> None:
        (staging / "vmlinuz").write_bytes(payload)
        Path(ready).touch()
        time.sleep(1.5)  # the other run starts meanwhile

    atomic.replace_directory(Path(outdir), fill, legacy=LEGACY_OUTPUT)


def test_two_runs_into_the_same_output_take_turns(tmp_path: Path) -> None:
    outdir, ready = tmp_path / "out", tmp_path / "first-is-filling"
    context = multiprocessing.get_context("fork")
    first = context.Process(target=_slow_build, args=(str(outdir), str(ready), b"first"))
    first.start()
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.exists()
    started = time.monotonic()

    def fill(staging: Path) -> None:
        (staging / "vmlinuz").write_bytes(b"second")

    atomic.replace_directory(outdir, fill, legacy=LEGACY_OUTPUT)
    waited = time.monotonic() - started
    first.join(30)
    assert first.exitcode == 0  # before the lock: OutputError, its staging cleaned away
    assert waited > 0.5  # the second run waited for the first one's swap
    assert (outdir / "vmlinuz").read_bytes() == b"second"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first-is-filling", "out"]


HOLD = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(30)
"""


@pytest.fixture
def readable() -> Iterator[Path]:
    """A directory of root's that everyone may read (as /var/lib/kdump-build)."""
    path = Path(tempfile.mkdtemp(prefix="kdump-build-root-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def test_another_user_cannot_hold_up_roots_writes(readable: Path) -> None:
    """nobody can open root's directories (0755), but not root's locks for them."""
    parent = readable
    attacker = subprocess.Popen(
        ["/usr/bin/python3", "-I", "-c", HOLD, str(parent)],
        preexec_fn=unprivileged.drop_privileges,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert attacker.stdout is not None and attacker.stdout.readline() == "held\n"
        started = time.monotonic()
        atomic.replace_directory(parent / "out", _write_kernel, legacy=LEGACY_OUTPUT)
        assert time.monotonic() - started < 10  # not the attacker's 30 s
    finally:
        attacker.kill()
        attacker.wait()


def _write_kernel(staging: Path) -> None:
    (staging / "vmlinuz").write_bytes(b"kernel")
