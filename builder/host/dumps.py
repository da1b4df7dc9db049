"""The dumps saved on this machine: /var/crash/<time>/ with vmcore, vmcore-dmesg.txt
and kdump-target (which target saved it), as the capture's /init writes them."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from builder.atomic import remove_tree
from builder.errors import OutputError
from builder.image.runtime import COLLECTOR_LOG

# /init names each dump directory after the crash time (busybox date, the RTC's UTC).
STAMP = re.compile(r"(?:(?P<host>[A-Za-z0-9.-]+)-)?(?P<time>\d{4}-\d{2}-\d{2}-\d{6})")
VERSION = re.compile(r"Linux version (\S+)")
PANIC = re.compile(r"Kernel panic - not syncing: .*")
# What /init writes; a directory holding the target record is one of ours.
TARGET_RECORD = "kdump-target"
# How much of a dump's log is read: its first lines name the kernel, its last the panic.
LOG_HEAD = 64 * 1024
LOG_TAIL = 256 * 1024
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class SavedDump:
    path: Path
    time: datetime
    kernel_version: str | None
    size: int
    panic: str | None
    complete: bool
    target: str | None
    # Written by the capture: root's and nobody else's to change, with the target record.
    ours: bool = False
    # What the collector said beyond its routine lines (makedumpfile's warnings).
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "time": self.time.isoformat(),
            "kernel_version": self.kernel_version,
            "size": self.size,
            "panic": self.panic,
            "complete": self.complete,
            "target": self.target,
            "warnings": list(self.warnings),
        }


def dump_time(name: str) -> datetime | None:
    """The crash time a dump directory is named after.

    >>> dump_time("2026-12-01-093512").isoformat()
    '2026-12-01T09:35:12+00:00'
    >>> dump_time("10.0.2.15-2026-12-01-093512").minute, dump_time("notes") is None
    (35, True)
    """
    found = STAMP.fullmatch(name)
    if found is None:
        return None
    try:
        return datetime.strptime(found["time"], "%Y-%m-%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def log_facts(text: str) -> tuple[str | None, str | None]:
    """The crashed kernel's version and its panic line, from its log.

    >>> log_facts("[ 0.0] Linux version 6.1.0-9-amd64 (debian-kernel@...)\\n"
    ...           "[ 9.1] Kernel panic - not syncing: sysrq triggered crash\\n")
    ('6.1.0-9-amd64', 'Kernel panic - not syncing: sysrq triggered crash')
    """
    version = VERSION.search(text)
    panic = PANIC.search(text)
    return (version.group(1) if version else None, panic.group(0).strip() if panic else None)


# makedumpfile's lines of a run that went as planned.
ROUTINE = re.compile(
    r"^(The dumpfile is saved to |makedumpfile Completed\.|Copying data|Excluding)"
)


def collector_warnings(text: str) -> tuple[str, ...]:
    """The collector's lines that say something went short of plan.

    >>> collector_warnings("The kernel version is not supported.\\n"
    ...     "The makedumpfile operation may be incomplete.\\n"
    ...     "The dumpfile is saved to /mnt/dump/x/vmcore-incomplete.\\n"
    ...     "makedumpfile Completed.\\n")
    ('The kernel version is not supported.', 'The makedumpfile operation may be incomplete.')
    """
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not ROUTINE.match(line))


def _open_file(directory: int, name: str) -> int | None:
    """A descriptor of regular file `name` in `directory`, never through a symlink."""
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return descriptor


def bounded_text(directory: int, name: str) -> str:
    """A file's text, or its head and tail when it is larger than `LOG_HEAD` + `LOG_TAIL`
    (any user may have planted a huge or sparse one: reading it whole would stop the boot).

    The kernel's version is in the log's first lines, the panic in its last ones.
    """
    descriptor = _open_file(directory, name)
    if descriptor is None:
        return ""
    try:
        size = os.fstat(descriptor).st_size
        if size <= LOG_HEAD + LOG_TAIL:
            data = os.read(descriptor, LOG_HEAD + LOG_TAIL)
        else:
            head = os.pread(descriptor, LOG_HEAD, 0)
            data = head + b"\n" + os.pread(descriptor, LOG_TAIL, size - LOG_TAIL)
    except OSError:
        return ""
    finally:
        os.close(descriptor)
    return data.decode(errors="replace")


def _written_by_the_capture(info: os.stat_result) -> bool:
    """Root's (the capture runs as root) and nobody else may change it."""
    return info.st_uid == 0 and not info.st_mode & 0o022


def read_dump(directory: Path) -> SavedDump | None:
    """One dump directory, or None when the name is not a crash time (or it is unreadable)."""
    when = dump_time(directory.name)
    if when is None:
        return None
    try:
        descriptor = os.open(directory, _DIRECTORY_FLAGS)
    except OSError:  # a symlink, not a directory, gone
        return None
    try:
        return _read_open_dump(directory, descriptor, when)
    finally:
        os.close(descriptor)


def _read_open_dump(directory: Path, descriptor: int, when: datetime) -> SavedDump:
    sizes: dict[str, int] = {}
    kinds: dict[str, os.stat_result] = {}
    for name in os.listdir(descriptor):
        with contextlib.suppress(OSError):
            info = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
            kinds[name] = info
            if stat.S_ISREG(info.st_mode):
                sizes[name] = info.st_size
    version, panic = log_facts(bounded_text(descriptor, "vmcore-dmesg.txt"))
    record = kinds.get(TARGET_RECORD)
    ours = (
        record is not None and stat.S_ISREG(record.st_mode) and _written_by_the_capture(record)
        and _written_by_the_capture(os.fstat(descriptor))
    )  # fmt: skip
    target = bounded_text(descriptor, TARGET_RECORD)[:256].strip() or None if record else None
    complete = "vmcore" in sizes or "vmcore.flat" in sizes
    warnings = collector_warnings(bounded_text(descriptor, COLLECTOR_LOG))
    return SavedDump(
        directory, when, version, sum(sizes.values()), panic, complete, target, ours, warnings
    )


def list_dumps(directory: Path) -> list[SavedDump]:
    """Every dump in `directory`, in the order of their crash times (as named)."""
    if not directory.is_dir():
        return []
    found = [read_dump(entry) for entry in directory.iterdir()]
    return sorted((dump for dump in found if dump is not None), key=lambda dump: dump.time)


def arrival_order(dumps: list[SavedDump], seen: list[str]) -> list[SavedDump]:
    """`dumps`, oldest first by when this machine first saw them (`seen`, the names in the
    order earlier prunes met them); those not seen yet are the newest, in name order.

    The name's time is the capture's clock, which a reset RTC sends back to 2000:
    the newest dump must not look like the oldest.

    >>> def dump(name):
    ...     return SavedDump(Path(name), dump_time(name), None, 0, None, True, None, True)
    >>> names = ["2026-12-01-000000", "2000-01-01-000000", "2026-12-02-000000"]
    >>> [d.path.name for d in arrival_order([dump(n) for n in names], names[::2])]
    ['2026-12-01-000000', '2026-12-02-000000', '2000-01-01-000000']
    """
    rank = {name: index for index, name in enumerate(seen)}
    return sorted(dumps, key=lambda dump: (rank.get(dump.path.name, len(rank)), dump.time))


def to_prune(dumps: list[SavedDump], keep: int, seen: list[str] | None = None) -> list[SavedDump]:
    """The oldest of our dumps beyond the newest `keep` (0 keeps all), in arrival order; the
    newest is never chosen. A directory the capture did not write (`SavedDump.ours`:
    root's, nobody else may write it, holding the target record) is never chosen."""
    ours = arrival_order([dump for dump in dumps if dump.ours], seen or [])
    if keep <= 0 or len(ours) <= keep:
        return []
    return ours[: len(ours) - max(keep, 1)]


def read_seen(record: Path) -> list[str]:
    """The dump names in the order pruning first met them (one a line)."""
    try:
        return record.read_text().split()
    except (OSError, UnicodeDecodeError):
        return []


def write_seen(record: Path, names: list[str]) -> None:
    """Record the arrival order, replaced whole (root's own directory)."""
    record.parent.mkdir(parents=True, exist_ok=True)
    temporary = record.with_name(record.name + ".new")
    temporary.write_text("".join(f"{name}\n" for name in names))
    os.replace(temporary, record)


def prune(directory: Path, keep: int, seen_record: Path | None = None) -> list[Path]:
    """Remove the dumps `to_prune` chooses; the removed directories. `seen_record` keeps the
    order in which dumps arrived (see `arrival_order`)."""
    dumps = list_dumps(directory)
    seen = read_seen(seen_record) if seen_record is not None else []
    ordered = arrival_order([dump for dump in dumps if dump.ours], seen)
    removed = []
    for dump in to_prune(dumps, keep, seen):
        try:
            remove_tree(dump.path)  # by descriptor; only what root alone may change
        except OSError as error:
            raise OutputError(f"{dump.path}: cannot remove it ({error.strerror})") from None
        removed.append(dump.path)
    if seen_record is not None:
        gone = set(removed)
        write_seen(seen_record, [dump.path.name for dump in ordered if dump.path not in gone])
    return removed
