"""Pruning and listing the dumps against a local user and a bad clock (issue 24, 1 and 2).

On the code before: nobody's three planted `2099-…` directories made prune(keep=3)
delete all three of root's dumps; a new dump stamped 2000 by a reset clock was
deleted first; a planted 64 GiB sparse vmcore-dmesg.txt made the listing raise
MemoryError; and any error in pruning stopped the boot before the load.
"""

from __future__ import annotations

import multiprocessing
import resource
from pathlib import Path

import pytest

from builder.host import boot
from builder.host.dumps import list_dumps, prune
from builder.host.paths import HostPaths
from tests.support.unprivileged import as_nobody, shared

__all__ = ["shared"]  # the fixture
from tests.unit.host.test_dumps import make_dump

PLANT = """
import os, sys
for index in range(3):
    fake = os.path.join(sys.argv[1], f"2099-01-0{index + 1}-000000")
    os.mkdir(fake)
    open(os.path.join(fake, "kdump-target"), "w").write("local UUID=6b1f0a2e\\n")
    open(os.path.join(fake, "vmcore"), "wb").write(b"")
"""


def test_planted_look_alikes_do_not_count_and_roots_dumps_stay(shared: Path) -> None:
    real = [make_dump(shared, f"2026-12-0{day}-000000") for day in (1, 2, 3)]
    as_nobody(PLANT, str(shared))
    assert len(list_dumps(shared)) == 6  # listed, as the user sees them
    assert prune(shared, keep=3) == []
    assert all((dump / "vmcore").is_file() for dump in real)


def test_a_dump_stamped_by_a_reset_clock_is_the_newest_not_the_oldest(tmp_path: Path) -> None:
    crash, seen = tmp_path / "crash", tmp_path / "state" / "dumps-seen"
    make_dump(crash, "2026-12-01-000000")
    make_dump(crash, "2026-12-02-000000")
    assert prune(crash, keep=2, seen_record=seen) == []  # met at this boot
    make_dump(crash, "2000-01-01-000000")  # the next crash, on a board without an RTC
    assert prune(crash, keep=2, seen_record=seen) == [crash / "2026-12-01-000000"]
    assert sorted(path.name for path in crash.iterdir()) == [
        "2000-01-01-000000", "2026-12-02-000000"
    ]  # fmt: skip
    assert seen.read_text().split() == ["2026-12-02-000000", "2000-01-01-000000"]


def _list_with_little_memory(directory: str) -> None:
    limit = 1 << 30  # far below the planted file's 64 GiB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    (dump,) = list_dumps(Path(directory))
    assert dump.panic == "Kernel panic - not syncing: sysrq triggered crash"


def test_a_huge_sparse_log_is_read_by_its_head_and_tail(tmp_path: Path) -> None:
    dump = make_dump(tmp_path, "2026-12-01-000000")
    log = dump / "vmcore-dmesg.txt"
    with open(log, "r+b") as handle:
        handle.truncate(64 << 30)
        handle.seek((64 << 30) - 100)
        handle.write(b"\n[ 9.1] Kernel panic - not syncing: sysrq triggered crash\n")
    assert log.stat().st_size == 64 << 30
    child = multiprocessing.get_context("fork").Process(
        target=_list_with_little_memory, args=(str(tmp_path),)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0  # before: MemoryError reading the whole file


def test_a_failure_in_pruning_is_said_and_the_boot_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()

    class Keep:
        keep = 2

    class Recipe:
        dump = Keep()

    def failing(directory: Path, keep: int, seen_record: Path | None = None) -> list[Path]:
        raise OSError(5, "Input/output error", str(directory))

    monkeypatch.setattr(boot, "local_dump_directories", lambda recipe: [crash])
    monkeypatch.setattr(boot, "prune", failing)
    said: list[str] = []
    boot.prune_dumps(Recipe(), HostPaths(tmp_path), said.append)  # type: ignore[arg-type]
    assert said == [f"kdump-build: warning: dumps in {crash} not pruned: "
                    f"[Errno 5] Input/output error: '{crash}'"]  # fmt: skip
