"""What `load` records about the crash kernel it loaded, for `status` and `unload`.

The kernel says whether a crash kernel is loaded, not how: the method (and,
for our own segments, the entry and segment names) is kept in a small JSON
file under /run, which the next boot clears with the loaded kernel.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from builder.errors import OutputError
from builder.kexec.method import LoadMethod

__all__ = [
    "STATE_FILE",
    "LoadRecord",
    "forget_load",
    "record_load",
    "recorded_method",
    "recorded_reason",
]

STATE_FILE = Path("/run/kdump-build/crash.json")


@dataclass(frozen=True)
class LoadRecord:
    """One load: how, from where, and (for our segments) where it enters."""

    method: LoadMethod
    outdir: Path
    entry: int | None = None
    segments: tuple[str, ...] = ()
    reason: str | None = None  # why `--method auto` chose `method`

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {"method": self.method.value, "outdir": str(self.outdir)}
        if self.reason is not None:
            document["reason"] = self.reason
        if self.entry is not None:
            document.update(entry=self.entry, segments=list(self.segments))
        return document


def record_load(record: LoadRecord, path: Path = STATE_FILE) -> None:
    """Write `record` to `path`; an `OutputError` if it cannot be written.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "kdump-build" / "crash.json"
    >>> record_load(LoadRecord(LoadMethod.FILE, Path("/out")), path)
    >>> recorded_method(path)
    <LoadMethod.FILE: 'file'>
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    except OSError as error:
        raise OutputError(f"cannot record state in {path}: {error.strerror}") from None


def recorded_method(path: Path = STATE_FILE) -> LoadMethod | None:
    """The method of the last recorded load; None when nothing (readable) is recorded."""
    try:
        document = json.loads(path.read_text())
        return LoadMethod(document["method"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def recorded_reason(path: Path = STATE_FILE) -> str | None:
    """Why `auto` chose the recorded method; None when it was named or nothing is recorded.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "crash.json"
    >>> record_load(LoadRecord(LoadMethod.SEGMENTS, Path("/out"), reason="no lockdown"), path)
    >>> recorded_reason(path)
    'no lockdown'
    """
    try:
        reason = json.loads(path.read_text()).get("reason")
    except (OSError, ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def forget_load(path: Path = STATE_FILE) -> None:
    """Remove the record (after an unload); nothing happens if there is none."""
    with contextlib.suppress(OSError):
        path.unlink()
