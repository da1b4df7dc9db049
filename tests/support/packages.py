"""Small package files (.tar.gz) for tests: bytes are regular files, str are symlink targets."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path


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
