"""Initrd members and plans: what goes into the initrd, split into archives, compressed.

Members are sorted by path so parents come before children; the cpio
writer (`builder.binfmt.cpio`) fixes owner, times and inode numbers, so
the same members always give the same bytes. Compression goes through
`builder.compression`, remembered in a cache keyed by the archive's bytes.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from builder.binfmt.cpio import write_cpio
from builder.compression import Compression, compress, encoder_version
from builder.errors import InitrdError, SourceError
from builder.image.cache import load_cache_entry, store_cache_entry
from builder.image.sources import MAX_SYMLINK_HOPS, NodeKind, Root, normalize

# The permission bits a file taken from a source root keeps: setuid, setgid and
# sticky bits of a package or sysroot never reach the initrd (everything there runs
# as root; a set-id bit could only ever surprise).
SOURCE_MODE = 0o777


class MemberKind(Enum):
    """The kinds of file an initrd holds."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHARDEV = "chardev"


_KIND_BITS = {
    MemberKind.FILE: stat.S_IFREG,
    MemberKind.DIR: stat.S_IFDIR,
    MemberKind.SYMLINK: stat.S_IFLNK,
    MemberKind.CHARDEV: stat.S_IFCHR,
}


@dataclass(frozen=True)
class Member:
    """One file of the initrd. `path` is absolute; symlinks keep their target in `data`."""

    path: str
    kind: MemberKind
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    origin: str = ""

    @property
    def target(self) -> str:
        return self.data.decode() if self.kind is MemberKind.SYMLINK else ""

    @property
    def st_mode(self) -> int:
        """The mode with its file type bits, as the cpio writer stores it."""
        return _KIND_BITS[self.kind] | (self.mode & 0o7777)


class InitrdPlan:
    """The members of an initrd, collected from roots and the recipe.

    Adding the same path twice is fine when it is the same member; a
    different member at a taken path is an error, so nothing is silently lost.
    """

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}
        self.missing_firmware: list[str] = []

    def add(self, member: Member) -> None:
        path = self._through_links(normalize(member.path))
        member = Member(path, member.kind, member.mode, member.data, member.rdev, member.origin)
        existing = self._members.get(path)
        if existing is not None:
            if (existing.kind, existing.mode, existing.data) != (
                member.kind,
                member.mode,
                member.data,
            ):
                raise InitrdError(
                    f"{path}: added twice with different contents "
                    f"(from {existing.origin or 'recipe'} and {member.origin or 'recipe'})"
                )
            return
        self._add_parents(path)
        self._members[path] = member

    def _through_links(self, path: str, *, follow_last: bool = False) -> str:
        """`path` with the symlinks among its parent directories (and, with
        `follow_last`, its last component) followed inside the plan.

        A merged-/usr root has /bin -> usr/bin: a file added as /bin/x belongs at
        /usr/bin/x, where the kernel's path lookup finds it through the link.
        """
        parts = [part for part in path.strip("/").split("/") if part]
        if follow_last:
            parents, name = parts, ""
        else:
            parents, name = parts[:-1], (parts[-1] if parts else "")
        pending = deque(parents)
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.popleft()
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/" + "/".join([*resolved, part])
            link = self._members.get(candidate)
            if link is None or link.kind is not MemberKind.SYMLINK:
                resolved.append(part)
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise InitrdError(f"{path}: too many levels of symlinks in the initrd")
            if link.target.startswith("/"):
                resolved = []
            pending.extendleft(reversed([p for p in link.target.split("/") if p not in ("", ".")]))
        return "/" + "/".join([*resolved, name] if name else resolved)

    def _add_parents(self, path: str) -> None:
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in self._members:
            self._members[parent] = Member(parent, MemberKind.DIR, 0o755)
            parent = posixpath.dirname(parent)
        if parent != "/" and self._members[parent].kind is not MemberKind.DIR:
            raise InitrdError(f"{path}: parent {parent} is not a directory in the initrd")

    def directory(self, path: str, mode: int = 0o755) -> None:
        """A directory; nothing to do where a symlink to a directory already stands."""
        existing = self._members.get(self._through_links(normalize(path)))
        if existing is not None and existing.kind is MemberKind.SYMLINK:
            target = self._members.get(self._through_links(normalize(path), follow_last=True))
            if target is not None and target.kind is MemberKind.DIR:
                return
        self.add(Member(path, MemberKind.DIR, mode))

    def file(self, path: str, data: bytes, mode: int = 0o644, origin: str = "") -> None:
        self.add(Member(path, MemberKind.FILE, mode, data, origin=origin))

    def symlink(self, path: str, target: str, origin: str = "") -> None:
        self.add(Member(path, MemberKind.SYMLINK, 0o777, target.encode(), origin=origin))

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.add(Member(path, MemberKind.CHARDEV, mode, rdev=(major, minor)))

    def copy_from(self, root: Root, path: str) -> None:
        """Copy a file from a root, with every symlink met on the way to it.

        The symlinks stay symlinks (a soname link, a merged-/usr `/lib`), so
        the initrd resolves `path` the way the source root does.
        """
        resolution = root.resolve(path)
        for link in resolution.links:
            self.symlink(link.path, link.target, origin=link.origin)
        node = root.lookup(resolution.path)
        if node.kind is not NodeKind.FILE:
            raise SourceError(f"{root.description}: {path}: not a regular file")
        self.file(
            resolution.path, root.read_bytes(resolution.path), node.mode & SOURCE_MODE, node.origin
        )

    def has(self, path: str) -> bool:
        return self._through_links(normalize(path)) in self._members

    def members(self) -> list[Member]:
        """Members sorted so that every parent precedes its children."""
        return sorted(self._members.values(), key=lambda member: member.path.split("/"))


def split_archives(
    members: Sequence[Member], archive_of: Callable[[Member], int]
) -> list[list[Member]]:
    """Split sorted members into separate archives, each with the directories above its members.

    The kernel unpacks concatenated archives one after another, so each
    archive must create the parents of its own members; a directory in
    several archives is created by the first and met again by the others,
    which is harmless. A directory with nothing below it goes to archive 0.
    Empty archives are left out.

    >>> plan = InitrdPlan(); plan.file("/a/b", b""); plan.file("/c", b"")
    >>> parts = split_archives(plan.members(), lambda member: int(member.path == "/c"))
    >>> [[member.path for member in part] for part in parts]
    [['/a', '/a/b'], ['/c']]
    """
    by_path = {member.path: member for member in members}
    wanted: dict[int, set[str]] = {}
    for member in members:
        if member.kind is MemberKind.DIR:
            continue
        index = archive_of(member)
        paths = wanted.setdefault(index, set())
        paths.add(member.path)
        parent = posixpath.dirname(member.path)
        while parent != "/" and parent not in paths:
            paths.add(parent)
            parent = posixpath.dirname(parent)
    placed = set().union(*wanted.values()) if wanted else set()
    wanted.setdefault(0, set()).update(
        path
        for path, member in by_path.items()
        if member.kind is MemberKind.DIR and path not in placed
    )
    return [
        [member for member in members if member.path in wanted[index]]
        for index in sorted(wanted)
        if wanted[index]
    ]


def is_private(member: Member) -> bool:
    """A file others may not read (a key, a secret from `initrd.extra_files`)."""
    return member.kind is MemberKind.FILE and not member.mode & 0o004


def initrd_mode(members: Iterable[Member], *, secret: bool = False) -> int:
    """The initrd file's mode: 0644 (0600 when it holds a `secret`), made as private as its
    most private file, since the initrd hands every member to whoever may read it.

    >>> plan = InitrdPlan(); plan.file("/bin/sh", b"", 0o755); oct(initrd_mode(plan.members()))
    '0o644'
    >>> plan.file("/etc/key", b"", 0o600); oct(initrd_mode(plan.members()))
    '0o600'
    """
    mode = 0o600 if secret else 0o644
    for member in members:
        if member.kind is MemberKind.FILE:
            mode &= (member.mode & 0o044) | 0o600
    return mode


def source_date_epoch() -> int:
    """Member mtimes: `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    return int(value) if value.isdigit() else 0


def compress_cached(data: bytes, method: Compression, level: int, cache: Path | None) -> bytes:
    """`compress`, remembered under the archive's sha256, method, level and encoder version.

    The result is the same bytes `compress` gives; a rebuild of unchanged
    contents skips the slow high-level compression.

    >>> compress_cached(b"abc", Compression.NONE, 0, None)
    b'abc'
    """
    if cache is None or method is Compression.NONE:
        return compress(data, method, level)
    key = sha256(f"{sha256(data)}:{method}:{level}:{encoder_version(method)}".encode())
    stored = cache / key[:2] / key
    cached = load_cache_entry(stored)
    if cached is not None:
        return cached
    result = compress(data, method, level)
    store_cache_entry(stored, result)
    return result


def early_cpio(files: dict[str, bytes], mtime: int = 0) -> bytes:
    """An uncompressed cpio of `files` and their parent directories, for the start of an initrd.

    >>> early_cpio({"/kernel/x86/microcode/GenuineIntel.bin": b"..."})[:6]
    b'070701'
    """
    plan = InitrdPlan()
    for path, data in sorted(files.items()):
        plan.file(path, data, 0o644, origin="microcode")
    return write_cpio(plan.members(), mtime)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
