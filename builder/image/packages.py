"""Package files (.deb, .rpm, .tar.*) read in place as one root, and what is cached of them.

libarchive reads each package (a .deb's data.tar inside it) into memory;
nothing is unpacked to disk. `PackageCache` keeps, per package sha256, an
index of its tree and the members a build actually read, so a warm build
does not open the packages at all.

A package is outside bytes. A member named with a `..` component, a hard
link to a member the package does not hold, the same path twice with
different contents, a member larger than `MAX_MEMBER_BYTES` or a package
expanding beyond `MAX_PACKAGE_BYTES` (a decompression bomb), and a
truncated archive are refused with a `SourceError`. Absolute names and
symlink targets mean the package's own root (builder.image.sources resolves
them there); device nodes stay nodes no build reads; setuid and setgid bits
never reach the initrd (builder.image.initrd).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import SourceError
from builder.image.cache import load_cache_entry, load_json_entry, store_cache_entry
from builder.image.progress import ByteProgress
from builder.image.sources import MERGED_USR_LINKS, Node, NodeKind, Root, normalize

# Data archive of a .deb; the compression varies between packages.
DEB_DATA_PREFIX = "data.tar"
# Far above anything Debian ships (the largest member of linux-source is 132 MiB, the
# 6.1 kernel package holds 389 MiB): what is read into memory stays below these.
MAX_MEMBER_BYTES = 1 << 30
MAX_PACKAGE_BYTES = 2 << 30
# What a metapackage may still ship: documentation and bug-reporting hints.
DOCUMENTATION_DIRS = (
    "/usr/share/doc/",
    "/usr/share/bug/",
    "/usr/share/lintian/",
    "/usr/share/man/",
)


class _BlockStream:
    """A non-seekable file object over libarchive data blocks, for nested archives."""

    def __init__(self, blocks: Iterator[Any], on_read: Callable[[int], None] | None = None) -> None:
        self._blocks = blocks
        self._pending = b""
        self._on_read = on_read  # hears the size of every block taken from the outer archive
        # An error reading the outer archive: raised into libarchive's C callback it
        # would be lost, so it is kept here and raised by the reader (a cut .deb).
        self.error: Exception | None = None

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: memoryview) -> int:
        try:
            while not self._pending:
                block = next(self._blocks, None)
                if block is None:
                    return 0
                self._pending = bytes(block)
                if self._on_read is not None:
                    self._on_read(len(self._pending))
        except Exception as error:  # handed to the reader, see above
            self.error = error
            return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


@contextmanager
def _archive_errors(path: Path) -> Iterator[None]:
    """libarchive's errors, also those met reading an entry's blocks, as one SourceError."""
    # Imported here: a warm build reads the package cache and never opens a package.
    # At start-up, libarchive would cost ~17 ms.
    import libarchive

    try:
        yield
    except libarchive.ArchiveError as error:
        message = str(error).split(" (")[0]
        raise SourceError(f"{path}: not a readable package archive ({message})") from None


def _archive_entries(path: Path, on_read: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Entries of a package's file tree: a .deb's data.tar, else the archive itself.

    Iterate it, and read the entries' blocks, inside `_archive_errors(path)`.
    `on_read` hears how many bytes of a .deb's data.tar.* were taken in.
    """
    # Imported here: at start-up, libarchive would cost ~17 ms.
    import libarchive

    with libarchive.file_reader(str(path)) as outer:
        for entry in outer:
            name = _member_name(path, entry.pathname)[1:]
            if name.startswith(DEB_DATA_PREFIX):
                stream = _BlockStream(iter(entry.get_blocks()), on_read)
                try:
                    with libarchive.stream_reader(stream, block_size=1 << 16) as inner:
                        yield from inner
                except libarchive.ArchiveError:
                    if stream.error is not None:  # the outer archive's error says more
                        raise stream.error from None
                    raise
                if stream.error is not None:
                    raise stream.error
                return
            if name in ("debian-binary",) or name.startswith("control.tar"):
                continue
            yield entry


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


def _member_name(package: Path, name: str | bytes | None, what: str = "member") -> str:
    """A member's path inside the package root; a `..` in it is refused, not resolved."""
    if isinstance(name, bytes):  # libarchive could not decode it
        raise SourceError(f"{package}: {what} {name!r} is not a UTF-8 name")
    if not name:
        raise SourceError(f"{package}: a {what} without a name")
    if ".." in name.split("/"):
        raise SourceError(f"{package}: {what} {name!r} leads outside the package ('..')")
    return normalize(name)


def _member_data(package: Path, entry: Any, path: str, budget: int) -> bytes:
    """A regular member's bytes, refused before or while reading when too large."""
    limit = min(MAX_MEMBER_BYTES, budget)
    if entry.size is not None and entry.size > limit:
        raise _too_large(package, path, entry.size, budget)
    blocks: list[bytes] = []
    count = 0
    for block in entry.get_blocks():
        count += len(block)
        if count > limit:
            raise _too_large(package, path, count, budget)
        blocks.append(bytes(block))
    return b"".join(blocks)


def _too_large(package: Path, path: str, size: int, budget: int) -> SourceError:
    if size > MAX_MEMBER_BYTES:
        return SourceError(
            f"{package}: {path}: {size} bytes, more than a member may hold "
            f"({MAX_MEMBER_BYTES >> 20} MiB; a decompression bomb?)"
        )
    return SourceError(
        f"{package}: {path}: the package expands beyond {MAX_PACKAGE_BYTES >> 20} MiB "
        "(a decompression bomb?)"
    )


def _scan_package(
    package: Path, on_read: Callable[[int], None] | None = None
) -> Iterator[tuple[_Record, bytes | None]]:
    """Every entry of a package, with the contents of its regular files."""
    with _archive_errors(package):
        yield from _scan_entries(package, on_read)


def _scan_entries(
    package: Path, on_read: Callable[[int], None] | None
) -> Iterator[tuple[_Record, bytes | None]]:
    budget = MAX_PACKAGE_BYTES
    for entry in _archive_entries(package, on_read):
        path = _member_name(package, entry.pathname)
        # `mode` less its type bits: libarchive-c 2.9 (Debian 12) has no `perm`.
        permissions = entry.mode & 0o7777
        if path == "/":
            continue
        if entry.isdir:
            yield _Record(path, NodeKind.DIR, permissions), None
        elif entry.issym:
            yield _Record(path, NodeKind.SYMLINK, 0o777, entry.linkpath or ""), None
        elif entry.islnk:
            target = _member_name(package, entry.linkpath, "hard link target")
            yield _Record(path, NodeKind.FILE, permissions, target, True), None
        elif entry.isreg:
            data = _member_data(package, entry, path, budget)
            budget -= len(data)
            yield _Record(path, NodeKind.FILE, permissions, size=len(data)), data
        else:
            yield _Record(path, NodeKind.OTHER, permissions), None


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

    >>> import tempfile
    >>> work = Path(tempfile.mkdtemp())
    >>> package = _example_package(work / "tool.tar")
    >>> cache = PackageCache(work / "cache")
    >>> PackageRoot([package], cache).read_bytes("/usr/bin/tool")
    b'#!/bin/sh\\n'
    >>> cache.load_index(cache.package_sha256(package))[0].path
    '/usr'
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
        remembered = load_cache_entry(memo)
        try:
            remembered_stamp, digest = (remembered or b"").decode().split()
            if remembered_stamp == stamp and len(digest) == 64:
                return digest
        except ValueError:
            pass
        digest = file_sha256(package)
        store_cache_entry(memo, f"{stamp} {digest}\n".encode())
        return digest

    def _package_dir(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest

    def load_index(self, digest: str) -> list[_Record] | None:
        try:
            document: Any = load_json_entry(self._package_dir(digest) / "index.json")
            if not isinstance(document, dict):
                return None
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
        data = load_cache_entry(self._member_path(digest, path))
        return data if data is not None and len(data) == size else None

    def store_member(self, digest: str, path: str, data: bytes) -> None:
        # Written even when a file is there: it may be the damaged entry that made
        # this build read the package (only after a scan does a member get here).
        store_cache_entry(self._member_path(digest, path), data)


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


# The origin of the links a merged-/usr package set implies (no package has them).
MERGED_USR_ORIGIN = "merged-/usr"


class PackageRoot(Root):
    """Several package files (.deb, .rpm, .tar.*) seen together as one root.

    Package files are read in place into memory; nothing is unpacked to disk.
    A later package's file replaces an earlier one's at the same path. With a
    `PackageCache`, the tree comes from the cached index and a file's
    contents from the member cache, so the package itself is read only when
    something is missing there.

    >>> import tempfile
    >>> root = PackageRoot([_example_package(Path(tempfile.mkdtemp()) / "tool.tar")])
    >>> root.description, root.lookup("/usr/bin/tool").mode
    ('tool.tar', 493)
    """

    def __init__(
        self,
        packages: Sequence[Path],
        cache: PackageCache | None = None,
        progress: ByteProgress | None = None,
    ) -> None:
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
        self._progress = _Progress(progress, packages)
        for package in packages:
            self._add_package(package)
            self._progress.package_done(package)
        self._link_merged_usr()

    def _link_merged_usr(self) -> None:
        """Packages that ship only under /usr mean a merged-/usr root: add its links.

        Debian 13 and later install /usr/bin, /usr/lib, ... only; the /bin ->
        usr/bin, /lib -> usr/lib links are base-files' (Essential, so on every
        installed system). A package set without base-files still means them:
        /bin/busybox or the dynamic loader /lib/ld-linux-aarch64.so.1 resolve
        as on the target. Only where no package has any of those tops (neither
        a directory nor a link): a Debian 12 set (real /lib) stays as it is.
        """
        if any(top in self._nodes for top in MERGED_USR_LINKS):
            return
        for top in MERGED_USR_LINKS:
            node = self._nodes.get("/usr" + top)
            if node is not None and node.kind is NodeKind.DIR:
                self._set(Node(top, NodeKind.SYMLINK, 0o777, "usr" + top, MERGED_USR_ORIGIN))

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
        records: dict[str, _Record] = {}
        package.contents = {}
        for record, data in _scan_package(package.path, self._progress.reader(package.path)):
            earlier = records.get(record.path)
            if earlier is not None and record.kind is not NodeKind.DIR:
                if earlier != record or package.contents.get(record.path) != data:
                    raise SourceError(
                        f"{package.path}: {record.path} is in the package twice, "
                        "with different contents"
                    )
                continue
            if record.hardlink and getattr(records.get(record.target), "kind", None) is not (
                NodeKind.FILE
            ):
                raise SourceError(
                    f"{package.path}: hard link {record.path} to missing {record.target}"
                )
            records.setdefault(record.path, record)
            if data is not None:
                package.contents[record.path] = data
        return list(records.values())

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
    with _archive_errors(package):
        for entry in _archive_entries(package):
            path = _member_name(package, entry.pathname)
            if entry.isreg and not path.startswith(DOCUMENTATION_DIRS):
                return False
    return True


def _example_package(path: Path) -> Path:
    """A one-file tar package at `path`, for the examples."""
    # Imported here: at start-up, tarfile would cost ~1.9 ms.
    import io
    import tarfile

    data = b"#!/bin/sh\n"
    with tarfile.open(path, "w") as archive:
        for directory in ("usr", "usr/bin"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        info = tarfile.TarInfo("usr/bin/tool")
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    return path


_REPORT_STEP = 1 << 20  # progress reported per this many package bytes read


class _Progress:
    """Progress over the package files of a root, by their sizes; silent without a listener."""

    def __init__(self, listener: ByteProgress | None, packages: Sequence[Path]) -> None:
        self.listener = listener
        self.sizes = {package: package.stat().st_size for package in packages} if listener else {}
        self.total = sum(self.sizes.values())
        self.done = 0  # bytes of the packages finished
        self.count = 0
        self.reading = 0  # bytes of the package being read

    def reader(self, package: Path) -> Callable[[int], None] | None:
        """What hears the bytes taken from `package` while it is read (its index not cached)."""
        if self.listener is None:
            return None
        listener, name = self.listener, package.name.split("_")[0]

        def read(size: int) -> None:
            before, self.reading = self.reading, self.reading + size
            if before // _REPORT_STEP != self.reading // _REPORT_STEP:
                done = min(self.done + self.reading, self.done + self.sizes[package])
                listener(done, self.total, f"reading {name}")

        return read

    def package_done(self, package: Path) -> None:
        if self.listener is None:
            return
        self.done += self.sizes[package]
        self.count += 1
        self.reading = 0
        self.listener(self.done, self.total, f"{self.count} of {len(self.sizes)} packages")
