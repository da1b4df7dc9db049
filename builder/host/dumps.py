"""The dumps saved on this machine: /var/crash/<time>/ with vmcore, vmcore-dmesg.txt
and kdump-target (which target saved it), as the capture's /init writes them."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from builder.errors import OutputError
from builder.image.runtime import COLLECTOR_LOG

# /init names each dump directory after the crash time (busybox date, the RTC's UTC).
STAMP = re.compile(r"^(?:(?P<host>[A-Za-z0-9.-]+)-)?(?P<time>\d{4}-\d{2}-\d{2}-\d{6})$")
VERSION = re.compile(r"Linux version (\S+)")
PANIC = re.compile(r"Kernel panic - not syncing: .*")
# What /init writes; a directory holding the target record is one of ours.
TARGET_RECORD = "kdump-target"


@dataclass(frozen=True)
class SavedDump:
    path: Path
    time: datetime
    kernel_version: str | None
    size: int
    panic: str | None
    complete: bool
    target: str | None
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
    found = STAMP.match(name)
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


def read_dump(directory: Path) -> SavedDump | None:
    """One dump directory, or None when the name is not a crash time."""
    when = dump_time(directory.name)
    if when is None or directory.is_symlink() or not directory.is_dir():
        return None
    files = [path for path in directory.iterdir() if path.is_file()]
    log = directory / "vmcore-dmesg.txt"
    text = log.read_text(errors="replace") if log.is_file() else ""
    version, panic = log_facts(text)
    record = directory / TARGET_RECORD
    target = record.read_text(errors="replace").strip() or None if record.is_file() else None
    complete = (directory / "vmcore").is_file() or (directory / "vmcore.flat").is_file()
    size = sum(path.stat().st_size for path in files)
    collector_log = directory / COLLECTOR_LOG
    said = collector_log.read_text(errors="replace") if collector_log.is_file() else ""
    warnings = collector_warnings(said)
    return SavedDump(directory, when, version, size, panic, complete, target, warnings)


def list_dumps(directory: Path) -> list[SavedDump]:
    """Every dump in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [read_dump(entry) for entry in directory.iterdir()]
    return sorted((dump for dump in found if dump is not None), key=lambda dump: dump.time)


def to_prune(dumps: list[SavedDump], keep: int) -> list[SavedDump]:
    """The oldest of our dumps beyond the newest `keep` (0 keeps all). A directory
    without the capture's target record is someone else's and is never chosen."""
    ours = [dump for dump in dumps if (dump.path / TARGET_RECORD).is_file()]
    if keep <= 0 or len(ours) <= keep:
        return []
    return ours[: len(ours) - keep]


def prune(directory: Path, keep: int) -> list[Path]:
    """Remove the dumps `to_prune` chooses; the removed directories."""
    removed = []
    for dump in to_prune(list_dumps(directory), keep):
        try:
            shutil.rmtree(dump.path)
        except OSError as error:
            raise OutputError(f"{dump.path}: cannot remove it ({error.strerror})") from None
        removed.append(dump.path)
    return removed
