"""Where the initrd's files come from: one interface over a root of files.

A root is the host (`/`), a sysroot directory, or a set of package files
(`.deb`, `.rpm`, `.tar.*`) read in place with libarchive. Paths are resolved
component by component inside the root: an absolute symlink means
root-relative, and nothing, neither a `..` nor a symlink, may leave the root.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import posixpath
import stat
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from builder.errors import SourceError
from builder.image.cache import store_cache_entry

# Linux's own limit on symlinks followed while resolving one path (MAXSYMLINKS).
MAX_SYMLINK_HOPS = 40
# Data archive of a .deb; the compression varies between packages.
DEB_DATA_PREFIX = "data.tar"
# What a metapackage may still ship: documentation and bug-reporting hints.
DOCUMENTATION_DIRS = (
    "/usr/share/doc/",
    "/usr/share/bug/",
    "/usr/share/lintian/",
    "/usr/share/man/",
)


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

        >>> DirectoryRoot("/").resolve("/bin/sh").path  # doctest: +SKIP
        '/usr/bin/dash'
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

        >>> DirectoryRoot("/").glob("/boot/vmlinuz-*")  # doctest: +SKIP
        ['/boot/vmlinuz-6.1.0-57-amd64']
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


class _BlockStream:
    """A non-seekable file object over libarchive data blocks, for nested archives."""

    def __init__(self, blocks: Iterator[Any]) -> None:
        self._blocks = blocks
        self._pending = b""

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: memoryview) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = bytes(block)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def _archive_entries(path: Path) -> Iterator[Any]:
    """Entries of a package's file tree: a .deb's data.tar, else the archive itself."""
    # Imported here: a warm build reads the package cache and never opens a package.
    import libarchive

    try:
        with libarchive.file_reader(str(path)) as outer:
            for entry in outer:
                name = entry.pathname
                if name.startswith(DEB_DATA_PREFIX):
                    stream = _BlockStream(iter(entry.get_blocks()))
                    with libarchive.stream_reader(stream, block_size=1 << 16) as inner:
                        yield from inner
                    return
                if name in ("debian-binary",) or name.startswith("control.tar"):
                    continue
                yield entry
    except libarchive.ArchiveError as error:
        message = str(error).split(" (")[0]
        raise SourceError(f"{path}: not a readable package archive ({message})") from None


@dataclass(frozen=True)
class _Record:
    """One entry of a package's file tree, as kept in the package index."""

    path: str
    kind: NodeKind
    mode: int
    target: str = ""  # symlink target, or the earlier path a hard link shares contents with
    hardlink: bool = False
    size: int = 0

    def to_json(self) -> list[Any]:
        return [self.path, self.kind.value, self.mode, self.target, self.hardlink, self.size]

    @classmethod
    def from_json(cls, row: list[Any]) -> _Record:
        path, kind, mode, target, hardlink, size = row
        return cls(str(path), NodeKind(kind), int(mode), str(target), bool(hardlink), int(size))


def _scan_package(package: Path) -> Iterator[tuple[_Record, bytes | None]]:
    """Every entry of a package, with the contents of its regular files."""
    for entry in _archive_entries(package):
        path = normalize(entry.pathname)
        if path == "/":
            continue
        if entry.isdir:
            yield _Record(path, NodeKind.DIR, entry.perm), None
        elif entry.issym:
            yield _Record(path, NodeKind.SYMLINK, 0o777, entry.linkpath), None
        elif entry.islnk:
            yield _Record(path, NodeKind.FILE, entry.perm, normalize(entry.linkpath), True), None
        elif entry.isreg:
            data = b"".join(bytes(block) for block in entry.get_blocks())
            yield _Record(path, NodeKind.FILE, entry.perm, size=len(data)), data
        else:
            yield _Record(path, NodeKind.OTHER, entry.perm), None


def _split(path: str) -> tuple[str, str]:
    """posixpath.dirname and basename of a normalized path, at a third of the cost.

    >>> _split("/usr/bin"), _split("/usr")
    (('/usr', 'bin'), ('/', 'usr'))
    """
    parent, _, name = path.rpartition("/")
    return parent or "/", name


class PackageCache:
    """What reading a package taught us, kept on disk keyed by the package's sha256.

    Per package: an index of its file tree and the contents of the members a
    build actually read, never the whole package. A warm build reads a few
    small files instead of decompressing a 70 MB kernel package; a member
    that is not cached yet costs one pass over its package. The cache is an
    optimisation only: anything unreadable in it is ignored and recomputed.

    >>> cache = PackageCache(Path.home() / ".cache/kdump-build/packages")  # doctest: +SKIP
    >>> root = PackageRoot([Path("linux-image.deb")], cache)  # doctest: +SKIP
    """

    INDEX_VERSION = 1

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def package_sha256(self, package: Path) -> str:
        """The sha256 of a package file, remembered by (path, size, mtime, inode)."""
        info = package.stat()
        stamp = f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
        memo = (
            self.directory / "hashes" / hashlib.sha256(str(package.resolve()).encode()).hexdigest()
        )
        try:
            remembered_stamp, digest = memo.read_text().split()
            if remembered_stamp == stamp and len(digest) == 64:
                return digest
        except (OSError, ValueError):
            pass
        digest = file_sha256(package)
        store_cache_entry(memo, f"{stamp} {digest}\n".encode())
        return digest

    def _package_dir(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest

    def load_index(self, digest: str) -> list[_Record] | None:
        try:
            document = json.loads((self._package_dir(digest) / "index.json").read_bytes())
            if document.get("version") != self.INDEX_VERSION:
                return None
            return [_Record.from_json(row) for row in document["entries"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store_index(self, digest: str, records: Sequence[_Record]) -> None:
        document = {
            "version": self.INDEX_VERSION,
            "entries": [record.to_json() for record in records],
        }
        store_cache_entry(self._package_dir(digest) / "index.json", json.dumps(document).encode())

    def _member_path(self, digest: str, path: str) -> Path:
        name = hashlib.sha256(path.encode()).hexdigest()
        return self._package_dir(digest) / "members" / name

    def load_member(self, digest: str, path: str, size: int) -> bytes | None:
        try:
            data = self._member_path(digest, path).read_bytes()
        except OSError:
            return None
        return data if len(data) == size else None

    def store_member(self, digest: str, path: str, data: bytes) -> None:
        target = self._member_path(digest, path)
        if not target.exists():
            store_cache_entry(target, data)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Package:
    path: Path
    digest: str = ""
    contents: dict[str, bytes] | None = None  # every file, once the package was scanned
    sizes: dict[str, int] = field(default_factory=dict)


class PackageRoot(Root):
    """Several package files (.deb, .rpm, .tar.*) seen together as one root.

    Package files are read in place into memory; nothing is unpacked to disk.
    A later package's file replaces an earlier one's at the same path. With a
    `PackageCache`, the tree comes from the cached index and a file's
    contents from the member cache, so the package itself is read only when
    something is missing there.

    >>> root = PackageRoot([Path("busybox-static.deb")])  # doctest: +SKIP
    >>> root.read_bytes("/bin/busybox")[:4]  # doctest: +SKIP
    b'\\x7fELF'
    """

    def __init__(self, packages: Sequence[Path], cache: PackageCache | None = None) -> None:
        names = [package.name for package in packages]
        super().__init__(names[0] if len(names) == 1 else f"the {len(names)} source packages")
        self.cache = cache
        self._nodes: dict[str, Node] = {"/": Node("/", NodeKind.DIR, 0o755, origin="")}
        self._children: dict[str, set[str]] = {"/": set()}
        # path -> (package, path whose contents it has: itself, or a hard link's target)
        self._providers: dict[str, tuple[_Package, str]] = {}
        self._packages: list[_Package] = []
        for package in packages:
            if not package.is_file():
                raise SourceError(f"{package}: package file not found")
            self._add_package(package)

    def _add_package(self, path: Path) -> None:
        package = _Package(path)
        self._packages.append(package)
        records: list[_Record] | None = None
        if self.cache is not None:
            package.digest = self.cache.package_sha256(path)
            records = self.cache.load_index(package.digest)
        if records is None:
            records = self._scan(package)
            if self.cache is not None:
                self.cache.store_index(package.digest, records)
        for record in records:
            self._add_record(package, record)

    def _scan(self, package: _Package) -> list[_Record]:
        records: list[_Record] = []
        package.contents = {}
        for record, data in _scan_package(package.path):
            records.append(record)
            if data is not None:
                package.contents[record.path] = data
        return records

    def _add_record(self, package: _Package, record: _Record) -> None:
        origin = package.path.name
        path = record.path
        self._add_parents(path, origin)
        if record.kind is NodeKind.DIR:
            existing = self._nodes.get(path)
            if existing is None or existing.kind is not NodeKind.DIR:
                self._set(Node(path, NodeKind.DIR, record.mode, origin=origin))
                self._children.setdefault(path, set())
        elif record.kind is NodeKind.SYMLINK:
            self._set(Node(path, NodeKind.SYMLINK, 0o777, record.target, origin))
        elif record.hardlink:
            # A hard link in the archive: same contents as its (earlier) target.
            provider = self._providers.get(record.target)
            if provider is None or provider[0] is not package:
                raise SourceError(f"{package.path}: hard link {path} to missing {record.target}")
            self._set(Node(path, NodeKind.FILE, record.mode, origin=origin))
            self._providers[path] = provider
        elif record.kind is NodeKind.FILE:
            self._set(Node(path, NodeKind.FILE, record.mode, origin=origin))
            self._providers[path] = (package, path)
            package.sizes[path] = record.size
        else:
            self._set(Node(path, NodeKind.OTHER, record.mode, origin=origin))

    def _add_parents(self, path: str, origin: str) -> None:
        parent = _split(path)[0]
        if parent not in self._nodes:
            self._add_parents(parent, origin)
            self._set(Node(parent, NodeKind.DIR, 0o755, origin=origin))
            self._children[parent] = set()

    def _set(self, node: Node) -> None:
        self._nodes[node.path] = node
        self._providers.pop(node.path, None)
        parent, name = _split(node.path)
        self._children.setdefault(parent, set()).add(name)

    def _lstat(self, path: str) -> Node | None:
        return self._nodes.get(path)

    def _read(self, path: str) -> bytes:
        data, from_cache = self._contents_of(path)
        if self.cache is not None and not from_cache:
            package, member = self._providers[path]
            self.cache.store_member(package.digest, member, data)
        return data

    def _read_transient(self, path: str) -> bytes:
        return self._contents_of(path)[0]

    def _contents_of(self, path: str) -> tuple[bytes, bool]:
        package, member = self._providers[path]
        if package.contents is None:
            assert self.cache is not None  # only cached packages are left unscanned
            cached = self.cache.load_member(package.digest, member, package.sizes[member])
            if cached is not None:
                return cached, True
            self._scan(package)
            assert package.contents is not None
        return package.contents[member], False

    def _listdir(self, path: str) -> list[str]:
        return list(self._children.get(path, ()))

    def walk_files(self, top: str) -> Iterator[str]:
        """As `Root.walk_files`, reading the in-memory tree instead of a lookup per file."""
        resolved = self.resolve(top).path
        if self.lookup(resolved).kind is not NodeKind.DIR:
            raise SourceError(f"{self.description}: {top}: not a directory")
        yield from self._walk_nodes(top.rstrip("/") or "/", resolved)

    def _walk_nodes(self, path: str, resolved: str) -> Iterator[str]:
        # Plain concatenation: posixpath.join costs more than the rest of the walk.
        prefix = path if path.endswith("/") else path + "/"
        resolved_prefix = resolved if resolved.endswith("/") else resolved + "/"
        for name in sorted(self._children.get(resolved, ())):
            node = self._nodes[resolved_prefix + name]
            if node.kind is NodeKind.DIR:
                yield from self._walk_nodes(prefix + name, node.path)
            elif node.kind is NodeKind.FILE:
                yield prefix + name

    def fingerprint(self, path: str) -> str | None:
        """An identity of everything below `path`: the packages that provide it."""
        prefix = path.rstrip("/") + "/"
        providing = {
            id(package) for name, (package, _) in self._providers.items() if name.startswith(prefix)
        }
        digests = [
            package.digest or file_sha256(package.path)
            for package in self._packages
            if id(package) in providing
        ]
        return hashlib.sha256("\n".join([path, *digests]).encode()).hexdigest()


def package_is_empty(package: Path) -> bool:
    """Whether a package ships nothing but documentation (as a metapackage does).

    Stops at the first real file, so a large package is barely read.
    """
    for entry in _archive_entries(package):
        if entry.isreg and not normalize(entry.pathname).startswith(DOCUMENTATION_DIRS):
            return False
    return True
