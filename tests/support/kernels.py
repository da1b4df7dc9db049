"""Real Debian kernels for the kernel image tests, read straight from the .deb.

The kernel packages are fetched (and cached) with `builder.image.fetch`. Members are
read here with libarchive directly rather than through `builder.image.sources`:
the test then stops at /boot (a few MiB in) instead of unpacking every
module, and the parser under test gets its bytes by a route of its own.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import libarchive

from builder.image.fetch import fetch_packages

# Debian's kernel flavour per architecture (linux-image-<flavour> metapackages).
FLAVOURS = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "ppc64le": "powerpc64le",
    "s390x": "s390x",
}


class _Blocks:
    """A read-only, non-seekable file object over libarchive data blocks."""

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


def deb_members(deb: str, patterns: tuple[str, ...]) -> dict[str, bytes]:
    """Files of a .deb's data.tar matching glob patterns (on `/boot/...` paths).

    Stops reading as soon as every pattern has matched once.
    """
    found: dict[str, bytes] = {}
    matched: set[str] = set()
    with libarchive.file_reader(deb) as outer:
        for member in outer:
            if not member.pathname.startswith("data.tar"):
                continue
            stream = _Blocks(iter(member.get_blocks()))
            with libarchive.stream_reader(stream, block_size=1 << 16) as inner:
                for entry in inner:
                    path = "/" + entry.pathname.lstrip("./")
                    hits = [p for p in patterns if fnmatch.fnmatch(path, p)]
                    if hits and entry.isreg:
                        found[path] = b"".join(bytes(b) for b in entry.get_blocks())
                        matched.update(hits)
                        if matched == set(patterns):
                            return found
            break
    return found


@dataclass(frozen=True)
class DebianKernel:
    """A kernel image and its config from a Debian linux-image package."""

    package: str
    path: str
    image: bytes
    config: str


@functools.cache
def debian_kernel(arch: str) -> DebianKernel:
    """The current Debian 12 kernel of `arch` (fetched once, then cached)."""
    (package,) = fetch_packages([f"linux-image-{FLAVOURS[arch]}"], arch)
    members = deb_members(str(package.path), ("/boot/vmlinu[xz]-*", "/boot/config-*"))
    (image_path,) = [p for p in members if p.startswith("/boot/vmlinu")]
    (config_path,) = [p for p in members if p.startswith("/boot/config-")]
    return DebianKernel(
        package=package.name,
        path=image_path,
        image=members[image_path],
        config=members[config_path].decode(),
    )
