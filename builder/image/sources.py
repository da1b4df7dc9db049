"""Where the initrd's files come from: one interface over a root of files.

A root is the host (`/`), a sysroot directory, or a set of package files
(`.deb`, `.rpm`, `.tar.*`) read in place (builder.image.packages). Paths are resolved
component by component inside the root: an absolute symlink means
root-relative, and nothing, neither a `..` nor a symlink, may leave the root.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from builder.errors import SourceError

# What usrmerge turns into links into /usr (Debian 12 and later hosts; Debian 13's
# and later base-files ship them).
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Linux's own limit on symlinks followed while resolving one path (MAXSYMLINKS).
MAX_SYMLINK_HOPS = 40


class NodeKind(Enum):
    """What a path in a root is."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True)
class Node:
    """One path in a root, not following a final symlink."""

    path: str
    kind: NodeKind
    mode: int
    target: str = ""
    origin: str = ""


@dataclass(frozen=True)
class Resolution:
    """A path resolved inside a root, with the symlinks met on the way."""

    path: str
    links: tuple[Node, ...]


def normalize(path: str) -> str:
    """Make a root path absolute and canonical without touching `..`.

    >>> normalize("usr//bin/./sh")
    '/usr/bin/sh'
    """
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return "/" + "/".join(parts)


class Root(ABC):
    """A tree of files addressed by absolute paths, symlinks resolved inside it."""

    def __init__(self, description: str) -> None:
        self.description = description

    @abstractmethod
    def _lstat(self, path: str) -> Node | None:
        """Describe `path`, whose parent components are real directories."""

    @abstractmethod
    def _read(self, path: str) -> bytes:
        """Read a regular file at a resolved path."""

    @abstractmethod
    def _listdir(self, path: str) -> list[str]:
        """Names in a resolved directory."""

    def resolve(self, path: str, *, follow_last: bool = True) -> Resolution:
        """Resolve `path` inside the root, following symlinks.

        >>> import tempfile
        >>> base = Path(tempfile.mkdtemp()); (base / "usr/bin").mkdir(parents=True)
        >>> _ = (base / "usr/bin/dash").write_bytes(b""); (base / "bin").symlink_to("usr/bin")
        >>> (base / "usr/bin/sh").symlink_to("/usr/bin/dash")
        >>> DirectoryRoot(base).resolve("/bin/sh").path
        '/usr/bin/dash'
        >>> DirectoryRoot(base).resolve("/bin/../../../etc")
        Traceback (most recent call last):
        ...
        builder.errors.SourceError: ...: symlink /bin -> usr/bin leads outside the root
        """
        pending = deque(part for part in path.split("/") if part not in ("", "."))
        resolved: list[str] = []
        links: list[Node] = []
        while pending:
            name = pending.popleft()
            if name == "..":
                if not resolved:
                    raise SourceError(self._escape_message(path, links))
                resolved.pop()
                continue
            candidate = "/" + "/".join([*resolved, name])
            node = self._lstat(candidate)
            if node is None:
                raise SourceError(f"{self.description}: {path}: not found ({candidate} is missing)")
            if node.kind is NodeKind.SYMLINK and (pending or follow_last):
                links.append(node)
                if len(links) > MAX_SYMLINK_HOPS:
                    raise SourceError(f"{self.description}: {path}: too many levels of symlinks")
                if node.target.startswith("/"):
                    resolved = []
                pending.extendleft(
                    reversed([part for part in node.target.split("/") if part not in ("", ".")])
                )
                continue
            if pending and node.kind is not NodeKind.DIR:
                raise SourceError(f"{self.description}: {path}: {candidate} is not a directory")
            resolved.append(name)
        return Resolution("/" + "/".join(resolved), tuple(links))

    def _escape_message(self, path: str, links: list[Node]) -> str:
        if links:
            link = links[-1]
            return (
                f"{self.description}: {path}: symlink {link.path} -> {link.target} "
                "leads outside the root"
            )
        return f"{self.description}: {path}: path leads outside the root"

    def lookup(self, path: str, *, follow_last: bool = True) -> Node:
        """The node at `path` (following a final symlink unless told not to)."""
        resolution = self.resolve(path, follow_last=follow_last)
        node = self._lstat(resolution.path)
        if node is None:  # only "/" itself has no node of its own
            return Node("/", NodeKind.DIR, 0o755, origin=self.description)
        return node

    def exists(self, path: str) -> bool:
        """Whether `path` resolves to something (a dangling symlink does not)."""
        try:
            self.resolve(path)
        except SourceError:
            return False
        return True

    def read_bytes(self, path: str, *, keep: bool = True) -> bytes:
        """The contents of the regular file at `path`, following symlinks.

        `keep=False` says the contents are only looked at, not put in the
        initrd, so a caching root need not remember them.
        """
        node = self.lookup(path)
        if node.kind is not NodeKind.FILE:
            raise SourceError(f"{self.description}: {path}: not a regular file")
        return self._read(node.path) if keep else self._read_transient(node.path)

    def _read_transient(self, path: str) -> bytes:
        return self._read(path)

    def listdir(self, path: str) -> list[str]:
        """Sorted names in the directory at `path`."""
        node = self.lookup(path)
        if node.kind is not NodeKind.DIR:
            raise SourceError(f"{self.description}: {path}: not a directory")
        return sorted(self._listdir(node.path))

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a shell pattern, one component at a time, sorted.

        >>> import tempfile
        >>> base = Path(tempfile.mkdtemp()); (base / "boot").mkdir()
        >>> _ = (base / "boot/vmlinuz-6.1").write_bytes(b"")
        >>> _ = (base / "boot/config").write_text("")
        >>> DirectoryRoot(base).glob("/boot/vmlinuz-*")
        ['/boot/vmlinuz-6.1']
        """
        matches = ["/"]
        for part in [part for part in pattern.split("/") if part not in ("", ".")]:
            found: list[str] = []
            for base in matches:
                if not any(char in part for char in "*?["):
                    candidate = posixpath.join(base, part)
                    if self.exists(candidate) or self._is_link(candidate):
                        found.append(candidate)
                    continue
                try:
                    names = self.listdir(base)
                except SourceError:
                    continue
                found.extend(
                    posixpath.join(base, name) for name in names if fnmatch.fnmatchcase(name, part)
                )
            matches = found
        return sorted(matches)

    def _is_link(self, path: str) -> bool:
        try:
            return self.lookup(path, follow_last=False).kind is NodeKind.SYMLINK
        except SourceError:
            return False

    def walk_files(self, top: str) -> Iterator[str]:
        """Every regular file below a directory, depth first, sorted, not entering symlinks."""
        for name in self.listdir(top):
            path = posixpath.join(top, name)
            node = self.lookup(path, follow_last=False)
            if node.kind is NodeKind.DIR:
                yield from self.walk_files(path)
            elif node.kind is NodeKind.FILE:
                yield path

    def origin(self, path: str) -> str:
        """Where the file at `path` came from, for the manifest."""
        return self.lookup(path, follow_last=False).origin

    def fingerprint(self, path: str) -> str | None:
        """A string that changes when anything below `path` changes, or None if unknown.

        Derived data (such as the module index) may be cached under it.
        """
        return None


class DirectoryRoot(Root):
    """A directory on this machine seen as `/`: the host root or a sysroot."""

    def __init__(self, base: Path) -> None:
        super().__init__(str(base))
        if not base.is_dir():
            raise SourceError(f"{base}: source root is not a directory")
        self.base = base

    def _host_path(self, path: str) -> str:
        return os.path.join(str(self.base), path.lstrip("/"))

    def _lstat(self, path: str) -> Node | None:
        host_path = self._host_path(path)
        try:
            info = os.lstat(host_path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise SourceError(f"{host_path}: {error.strerror}") from error
        origin = host_path
        if stat.S_ISLNK(info.st_mode):
            return Node(path, NodeKind.SYMLINK, 0o777, os.readlink(host_path), origin)
        if stat.S_ISDIR(info.st_mode):
            return Node(path, NodeKind.DIR, stat.S_IMODE(info.st_mode), origin=origin)
        if stat.S_ISREG(info.st_mode):
            return Node(path, NodeKind.FILE, stat.S_IMODE(info.st_mode), origin=origin)
        return Node(path, NodeKind.OTHER, stat.S_IMODE(info.st_mode), origin=origin)

    def _read(self, path: str) -> bytes:
        host_path = self._host_path(path)
        try:
            with open(host_path, "rb") as handle:
                return handle.read()
        except OSError as error:
            raise SourceError(f"{host_path}: {error.strerror}") from error

    def _listdir(self, path: str) -> list[str]:
        host_path = self._host_path(path)
        try:
            return os.listdir(host_path)
        except OSError as error:
            raise SourceError(f"{host_path}: {error.strerror}") from error

    def walk_files(self, top: str) -> Iterator[str]:
        """As `Root.walk_files`, with one scandir per directory instead of a lookup per file."""
        resolved = self.resolve(top).path
        if self.lookup(resolved).kind is not NodeKind.DIR:
            raise SourceError(f"{self.description}: {top}: not a directory")
        yield from self._scan_files(top.rstrip("/") or "/", self._host_path(resolved))

    def _scan_files(self, path: str, host_path: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(host_path), key=lambda entry: entry.name)
        except OSError as error:
            raise SourceError(f"{host_path}: {error.strerror}") from error
        for entry in entries:
            child = posixpath.join(path, entry.name)
            if entry.is_dir(follow_symlinks=False):
                yield from self._scan_files(child, entry.path)
            elif entry.is_file(follow_symlinks=False):
                yield child

    def fingerprint(self, path: str) -> str | None:
        """Names, sizes and modification times of every file below `path`."""
        digest = hashlib.sha256(f"{self.base}:{path}".encode())
        top = self._host_path(self.resolve(path).path)
        for directory, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(directory, name)
                try:
                    info = os.lstat(full)
                except OSError:
                    continue
                digest.update(f"{full}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        return digest.hexdigest()
