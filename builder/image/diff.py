"""What differs between two initrds, member by member (the `diff` command)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from builder.binfmt.cpio import ArchiveEntry


class ChangeStatus(StrEnum):
    """How a path differs between two initrds."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class MemberChange:
    """How one path differs between two initrds."""

    path: str
    status: ChangeStatus
    before: ArchiveEntry | None
    after: ArchiveEntry | None

    def details(self) -> list[str]:
        """What changed, e.g. `size 10 -> 12`, `mode 0644 -> 0755`, `contents`.

        >>> before = ArchiveEntry("/init", 0o100755, 2, b"hi", (0, 0), 0)
        >>> after = ArchiveEntry("/init", 0o100700, 3, b"bye", (0, 0), 0)
        >>> MemberChange("/init", ChangeStatus.CHANGED, before, after).details()
        ['mode 100755 -> 100700', 'size 2 -> 3']
        """
        if self.before is None or self.after is None:
            return []
        before, after = self.before, self.after
        found: list[str] = []
        if before.mode != after.mode:
            found.append(f"mode {before.mode:06o} -> {after.mode:06o}")
        if before.target != after.target:
            found.append(f"target {before.target} -> {after.target}")
        elif before.size != after.size:
            found.append(f"size {before.size} -> {after.size}")
        elif before.data != after.data:
            found.append("contents")
        if before.rdev != after.rdev:
            found.append(f"device {before.rdev} -> {after.rdev}")
        return found


def diff_initrds(before: list[ArchiveEntry], after: list[ArchiveEntry]) -> list[MemberChange]:
    """Members added, removed and changed between two initrds, by path.

    A path in several archives of one initrd counts as its last one, as the
    kernel unpacks later archives over earlier ones.

    >>> entry = ArchiveEntry("/init", 0o100755, 2, b"hi", (0, 0), 0)
    >>> [change.status for change in diff_initrds([entry], [])]
    [<ChangeStatus.REMOVED: 'removed'>]
    """
    old = {entry.path: entry for entry in before}
    new = {entry.path: entry for entry in after}
    changes: list[MemberChange] = []
    for path in sorted(old.keys() | new.keys(), key=lambda path: path.split("/")):
        if path not in new:
            changes.append(MemberChange(path, ChangeStatus.REMOVED, old[path], None))
        elif path not in old:
            changes.append(MemberChange(path, ChangeStatus.ADDED, None, new[path]))
        else:
            a, b = old[path], new[path]
            if (a.mode, a.data, a.rdev) != (b.mode, b.data, b.rdev):
                changes.append(MemberChange(path, ChangeStatus.CHANGED, a, b))
    return changes
