"""The dumps saved on this machine: listing, and pruning that touches only ours."""

from __future__ import annotations

from pathlib import Path

from builder.host.dumps import list_dumps, prune
from builder.image.runtime import COLLECTOR_LOG
from tests.conftest import run_cli

LOG = (
    "[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP\n"
    "[   70.100000] sysrq: Trigger a crash\n"
    "[   70.100100] Kernel panic - not syncing: sysrq triggered crash\n"
)


def make_dump(directory: Path, name: str, *, ours: bool = True, vmcore: bool = True) -> Path:
    dump = directory / name
    dump.mkdir(parents=True)
    (dump / "vmcore-dmesg.txt").write_text(LOG)
    if vmcore:
        (dump / "vmcore").write_bytes(bytes(4096))
    else:
        (dump / "vmcore-incomplete").write_bytes(bytes(100))
    if ours:
        (dump / "kdump-target").write_text("local UUID=6b1f0a2e\n")
    return dump


def test_listing_reads_time_kernel_size_panic_and_target(tmp_path: Path) -> None:
    make_dump(tmp_path, "2026-12-01-101500")
    make_dump(tmp_path, "2026-11-30-080000", vmcore=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "README").write_text("not a dump\n")
    dumps = list_dumps(tmp_path)
    assert [dump.path.name for dump in dumps] == ["2026-11-30-080000", "2026-12-01-101500"]
    newest = dumps[1]
    assert newest.to_json() == {
        "path": str(tmp_path / "2026-12-01-101500"),
        "time": "2026-12-01T10:15:00+00:00",
        "kernel_version": "6.1.0-57-amd64",
        "size": 4096 + len(LOG) + len("local UUID=6b1f0a2e\n"),
        "panic": "Kernel panic - not syncing: sysrq triggered crash",
        "complete": True,
        "target": "local UUID=6b1f0a2e",
        "warnings": [],
    }
    assert not dumps[0].complete


def test_the_collectors_warnings_are_kept_and_listed(tmp_path: Path) -> None:
    """What Debian 14's makedumpfile 1.7.8 says on its 7.2 kernel, as /init keeps it."""
    directory = make_dump(tmp_path, "2026-12-01-101500")
    (directory / COLLECTOR_LOG).write_text(
        "The kernel version is not supported.\n"
        "The makedumpfile operation may be incomplete.\n"
        "The dumpfile is saved to /mnt/dump/2026-12-01-101500/vmcore-incomplete.\n"
        "makedumpfile Completed.\n"
    )
    (dump,) = list_dumps(tmp_path)
    assert dump.warnings == (
        "The kernel version is not supported.",
        "The makedumpfile operation may be incomplete.",
    )
    listing = run_cli("dumps", "--dir", str(tmp_path))
    assert listing.returncode == 0, listing.stderr
    assert "    collector: The kernel version is not supported.\n" in listing.stdout


def test_prune_keeps_the_newest_and_never_touches_others(tmp_path: Path) -> None:
    for day in range(1, 6):
        make_dump(tmp_path, f"2026-12-0{day}-000000")
    foreign = make_dump(tmp_path, "2026-11-01-000000", ours=False)
    removed = prune(tmp_path, keep=2)
    assert [path.name for path in removed] == [f"2026-12-0{day}-000000" for day in (1, 2, 3)]
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == [foreign.name, "2026-12-04-000000", "2026-12-05-000000"]
    assert prune(tmp_path, keep=0) == []


def test_no_directory_no_dumps(tmp_path: Path) -> None:
    assert list_dumps(tmp_path / "missing") == []
