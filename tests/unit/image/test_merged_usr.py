"""A package set that ships only under /usr is a merged-/usr root: its /bin, /lib links are implied.

Debian 13 and later install everything under /usr; the /bin -> usr/bin,
/lib -> usr/lib links are base-files' (Essential). builder.image.packages
adds them when no package has any of those top-level names, so a recipe's
/bin/busybox and a program's /lib/ld-linux-*.so.1 resolve as on the target.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from builder.image.packages import MERGED_USR_ORIGIN, PackageRoot
from builder.image.sources import NodeKind


def _package(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A tar package with `files` (their directories too) and symlinks `links`."""
    with tarfile.open(path, "w") as archive:
        directories = sorted({str(Path(name).parent) for name in files} - {"."})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path


def test_only_usr_means_the_links_into_usr(tmp_path: Path) -> None:
    root = PackageRoot([
        _package(tmp_path / "busybox.tar", {"usr/bin/busybox": b"bb"}),
        _package(tmp_path / "libc.tar", {"usr/lib/ld-linux-aarch64.so.1": b"ld"}),
    ])  # fmt: skip
    assert root.read_bytes("/bin/busybox") == b"bb"
    assert root.read_bytes("/lib/ld-linux-aarch64.so.1") == b"ld"
    link = root.lookup("/bin", follow_last=False)
    assert (link.kind, link.target, link.origin) == (NodeKind.SYMLINK, "usr/bin", MERGED_USR_ORIGIN)
    # Only where /usr has the directory: no /usr/sbin, no /sbin.
    assert not root.exists("/sbin")
    assert sorted(root.listdir("/")) == ["bin", "lib", "usr"]


def test_a_real_top_level_directory_means_no_links(tmp_path: Path) -> None:
    """Debian 12's libc6 has a real /lib: that set is not merged-/usr, nothing is added."""
    root = PackageRoot([
        _package(tmp_path / "busybox.tar", {"usr/bin/busybox": b"bb"}),
        _package(tmp_path / "libc.tar", {"lib/ld-linux-aarch64.so.1": b"ld"}),
    ])  # fmt: skip
    assert not root.exists("/bin/busybox")
    assert root.lookup("/lib", follow_last=False).kind is NodeKind.DIR


def test_a_package_with_the_links_is_left_as_it_is(tmp_path: Path) -> None:
    """base-files named in the recipe: its own links, nothing of ours beside them."""
    root = PackageRoot([
        _package(tmp_path / "base-files.tar", {}, {"bin": "usr/bin", "lib": "usr/lib"}),
        _package(tmp_path / "tools.tar", {"usr/bin/busybox": b"bb", "usr/sbin/tool": b"t"}),
    ])  # fmt: skip
    assert root.lookup("/bin", follow_last=False).origin == "base-files.tar"
    assert root.read_bytes("/bin/busybox") == b"bb"
    assert not root.exists("/sbin")
