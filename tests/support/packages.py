"""Package files for tests: .tar.*, .deb and .rpm, benign or hostile, written byte by byte.

`tar_gz` and `write_package` make the small packages most tests need (bytes
are regular files, str are symlink targets). `Entry` describes any member an
archive can hold, including what a hostile package would: names with `..`,
hard links and device nodes, set-id modes, duplicates. `write_tar`, `write_deb`
and `write_rpm` put entries in each package format (the .deb and .rpm
containers are written here, so nothing refuses a hostile name on the way; the
benign ones are checked against dpkg-deb and rpm2cpio). `write_bomb` writes a
small compressed package whose members expand to gigabytes.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import struct
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tests.support.paths import REPO


def tar_gz(members: Mapping[str, bytes | str], *, mode: int = 0o755) -> bytes:
    """A gzip-compressed tar of `members`, in sorted order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in sorted(members.items()):
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                archive.addfile(info)
            else:
                info.size = len(content)
                info.mode = mode
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_package(path: Path, members: Mapping[str, bytes | str], *, mode: int = 0o755) -> Path:
    """`tar_gz(members)` written to `path`; returns `path`."""
    path.write_bytes(tar_gz(members, mode=mode))
    return path


class Kind(Enum):
    """What an archive member is."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHARDEV = "chardev"
    BLOCKDEV = "blockdev"
    FIFO = "fifo"


_TAR_TYPES = {
    Kind.FILE: tarfile.REGTYPE,
    Kind.DIR: tarfile.DIRTYPE,
    Kind.SYMLINK: tarfile.SYMTYPE,
    Kind.HARDLINK: tarfile.LNKTYPE,
    Kind.CHARDEV: tarfile.CHRTYPE,
    Kind.BLOCKDEV: tarfile.BLKTYPE,
    Kind.FIFO: tarfile.FIFOTYPE,
}
# st_mode file type bits, for cpio (an .rpm's payload).
_MODE_TYPES = {
    Kind.FILE: 0o100000,
    Kind.DIR: 0o040000,
    Kind.SYMLINK: 0o120000,
    Kind.HARDLINK: 0o100000,
    Kind.CHARDEV: 0o020000,
    Kind.BLOCKDEV: 0o060000,
    Kind.FIFO: 0o010000,
}


@dataclass(frozen=True)
class Entry:
    """One archive member, spelled exactly as it goes into the archive."""

    name: str
    data: bytes = b""
    kind: Kind = Kind.FILE
    target: str = ""  # symlink target or hard link's earlier member
    mode: int = 0o644
    rdev: tuple[int, int] = (0, 0)


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    """An uncompressed tar of `entries`, in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type, info.mode = _TAR_TYPES[entry.kind], entry.mode
            info.linkname = entry.target
            info.devmajor, info.devminor = entry.rdev
            if entry.kind is Kind.FILE:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def write_tar(path: Path, entries: Iterable[Entry]) -> Path:
    """A tar of `entries`, compressed by the suffix of `path` (.tar, .tar.gz, .tar.xz)."""
    data = tar_bytes(entries)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    elif path.name.endswith(".xz"):
        data = lzma.compress(data)
    path.write_bytes(data)
    return path


def ar_archive(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A System V ar archive (the container of a .deb), members in order."""
    out = [b"!<arch>\n"]
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n"
        out += [header.encode(), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


CONTROL = b"Package: hostile\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"


def write_deb(path: Path, entries: Iterable[Entry], *, data_tar: bytes | None = None) -> Path:
    """A .deb: debian-binary, control.tar.gz and data.tar.gz (or the given gzip stream)."""
    control = tar_bytes([Entry("./control", CONTROL)])
    data = data_tar if data_tar is not None else gzip.compress(tar_bytes(entries), mtime=0)
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", gzip.compress(control, mtime=0)),
        ("data.tar.gz", data),
    ]
    path.write_bytes(ar_archive(members))
    return path


def cpio_newc(entries: Iterable[Entry]) -> bytes:
    """A cpio in the newc format (an .rpm's payload), with its trailer."""
    out = []
    for inode, entry in enumerate([*entries, Entry("TRAILER!!!", kind=Kind.FILE)], 1):
        body = entry.target.encode() if entry.kind is Kind.SYMLINK else entry.data
        if entry.kind is Kind.HARDLINK:
            body = b""  # newc links by inode number; a lone link has no contents
        name = entry.name.encode() + b"\0"
        fields = [inode, _MODE_TYPES[entry.kind] | entry.mode, 0, 0, 1, 0, len(body), 0, 0,
                  entry.rdev[0], entry.rdev[1], len(name), 0]  # fmt: skip
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        out += [header, name, b"\0" * (-(len(header) + len(name)) % 4)]
        out += [body, b"\0" * (-len(body) % 4)]
    return b"".join(out)


# rpm's header tags and types (rpm's lib/rpmtag.h).
_RPM_STRING, _RPM_INT32 = 6, 4
_RPM_TAGS: tuple[tuple[int, str | int], ...] = (
    (1000, "hostile"), (1001, "1"), (1002, "1"), (1124, "cpio"), (1125, "gzip"),
)  # fmt: skip


def _rpm_header(tags: Sequence[tuple[int, str | int]]) -> bytes:
    index, store = [], b""
    for tag, value in tags:
        if isinstance(value, int):
            store += b"\0" * (-len(store) % 4)
            kind, payload = _RPM_INT32, struct.pack(">I", value)
        else:
            kind, payload = _RPM_STRING, value.encode() + b"\0"
        index.append(struct.pack(">4I", tag, kind, len(store), 1))
        store += payload
    magic = b"\x8e\xad\xe8\x01\0\0\0\0"
    return magic + struct.pack(">2I", len(index), len(store)) + b"".join(index) + store


def write_rpm(path: Path, entries: Iterable[Entry], *, payload: bytes | None = None) -> Path:
    """An .rpm: lead, signature header, header, then the gzip cpio payload."""
    lead = struct.pack(">4sBBhh66shh16s", b"\xed\xab\xee\xdb", 3, 0, 0, 1, b"hostile-1-1",
                       1, 5, b"")  # fmt: skip
    archive = cpio_newc(entries)
    body = payload if payload is not None else gzip.compress(archive, mtime=0)
    # RPMTAG_ARCHIVESIZE: rpm2cpio checks what it copied against it.
    header = _rpm_header([*_RPM_TAGS, *([(1046, len(archive))] if payload is None else [])])
    signature = _rpm_header([(1000, len(header) + len(body))])  # RPMSIGTAG_SIZE
    signature += b"\0" * (-len(signature) % 8)
    path.write_bytes(lead + signature + header + body)
    return path


# ---------------------------------------------------------------------------
# Decompression bombs: concatenated gzip members (one stream to every reader) of
# zeros, so a few MiB on disk expand to gigabytes without compressing gigabytes.

_ZERO_MIB = 1 << 20


def gzip_bomb_tar(members: Sequence[tuple[str, int]]) -> bytes:
    """A gzip tar whose members are `size` zero bytes each (sizes in whole MiB)."""
    zeros = gzip.compress(b"\0" * _ZERO_MIB, compresslevel=9, mtime=0)
    out = []
    for name, size in members:
        assert size % _ZERO_MIB == 0
        info = tarfile.TarInfo(name)
        info.size = size
        out.append(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT), mtime=0))
        out.append(zeros * (size // _ZERO_MIB))
    out.append(gzip.compress(b"\0" * 1024, mtime=0))  # the end of the archive
    return b"".join(out)


def gzip_bomb_cpio(members: Sequence[tuple[str, int]]) -> bytes:
    """The same as a gzip newc cpio (an .rpm payload); sizes below 4 GiB (newc's field)."""
    zeros = gzip.compress(b"\0" * _ZERO_MIB, compresslevel=9, mtime=0)
    out = []
    for inode, (name, size) in enumerate(members, 1):
        encoded = name.encode() + b"\0"
        fields = [inode, 0o100644, 0, 0, 1, 0, size, 0, 0, 0, 0, len(encoded), 0]
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        header += encoded + b"\0" * (-(len(header) + len(encoded)) % 4)
        out += [gzip.compress(header, mtime=0), zeros * (size // _ZERO_MIB)]
    out.append(gzip.compress(cpio_newc([]), mtime=0))
    return b"".join(out)


def write_bomb(stem: Path, fmt: str, members: Sequence[tuple[str, int]]) -> Path:
    """A bomb package (`fmt`: tar.gz, deb or rpm) of zero-filled members under /usr/share."""
    named = [(f"./usr/share/{name}", size) for name, size in members]
    if fmt == "rpm":
        return write_rpm(stem.with_suffix(".rpm"), [], payload=gzip_bomb_cpio(named))
    if fmt == "deb":
        return write_deb(stem.with_suffix(".deb"), [], data_tar=gzip_bomb_tar(named))
    path = stem.with_suffix(".tar.gz")
    path.write_bytes(gzip_bomb_tar(named))
    return path


_MEASURE = """
import json, resource, sys
from pathlib import Path
from builder.errors import SourceError
import builder.image.packages as packages
if len(sys.argv) > 2:
    packages.MAX_PACKAGE_BYTES = int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    packages.PackageRoot([Path(sys.argv[1])])
    outcome = "read"
except SourceError as error:
    outcome = str(error)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "before_kib": before, "peak_kib": after}))
"""


def measure_bomb(package: Path, package_limit: int | None = None) -> dict[str, object]:
    """Open `package` in a new interpreter (with another package limit, if given): what
    happened and its peak RSS before and after (ru_maxrss, KiB)."""
    limit = [] if package_limit is None else [str(package_limit)]
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(package), *limit], cwd=REPO,
                            capture_output=True, text=True, check=False, timeout=1800)  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    measured: dict[str, object] = json.loads(result.stdout)
    return measured
