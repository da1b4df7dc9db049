from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder.errors import SourceError
from builder.image.packages import PackageCache, PackageRoot, package_is_empty
from builder.image.sources import DirectoryRoot, NodeKind
from tests.support.packages import tar_gz


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libfoo.so.1.2").write_bytes(b"foo")
    (root / "usr/lib/libfoo.so.1").symlink_to("libfoo.so.1.2")
    (root / "lib").symlink_to("usr/lib")  # merged /usr
    (root / "etc").mkdir()
    (root / "etc/abs").symlink_to("/usr/lib/libfoo.so.1")  # root-relative, not the host's
    (root / "etc/escape").symlink_to("../../../../../etc/passwd")
    (root / "etc/loop").symlink_to("loop")
    (root / "etc/dangling").symlink_to("missing")
    (tmp_path / "outside").write_text("secret")
    return root


def test_resolves_through_symlinked_directories(tree: Path) -> None:
    root = DirectoryRoot(tree)
    resolution = root.resolve("/lib/libfoo.so.1")
    assert resolution.path == "/usr/lib/libfoo.so.1.2"
    assert [link.path for link in resolution.links] == ["/lib", "/usr/lib/libfoo.so.1"]
    assert root.read_bytes("/lib/libfoo.so.1") == b"foo"


def test_absolute_symlink_is_root_relative(tree: Path) -> None:
    assert DirectoryRoot(tree).read_bytes("/etc/abs") == b"foo"


def test_symlink_cannot_leave_the_root(tree: Path) -> None:
    with pytest.raises(SourceError) as caught:
        DirectoryRoot(tree).read_bytes("/etc/escape")
    assert "symlink /etc/escape -> ../../../../../etc/passwd leads outside the root" in str(
        caught.value
    )


def test_dotdot_cannot_leave_the_root(tree: Path) -> None:
    with pytest.raises(SourceError, match="leads outside the root"):
        DirectoryRoot(tree).read_bytes("/../outside")


def test_symlink_loop_and_dangling(tree: Path) -> None:
    root = DirectoryRoot(tree)
    with pytest.raises(SourceError, match="too many levels of symlinks"):
        root.read_bytes("/etc/loop")
    with pytest.raises(SourceError, match="not found"):
        root.read_bytes("/etc/dangling")
    assert not root.exists("/etc/dangling")


def test_glob(tree: Path) -> None:
    root = DirectoryRoot(tree)
    assert root.glob("/lib/libfoo.so.*") == ["/lib/libfoo.so.1", "/lib/libfoo.so.1.2"]
    assert root.glob("/nope/*") == []


def test_package_root_from_tarballs_overlays(tmp_path: Path) -> None:
    first = tmp_path / "a.tar.gz"
    second = tmp_path / "b.tar.gz"
    first.write_bytes(
        tar_gz({"./bin/tool": b"v1", "./lib/x.so.1": "x.so.1.0", "./lib/x.so.1.0": b"x"})
    )
    second.write_bytes(tar_gz({"./bin/tool": b"v2"}))
    root = PackageRoot([first, second])
    assert root.read_bytes("/bin/tool") == b"v2"
    assert root.origin("/bin/tool") == "b.tar.gz"
    assert root.read_bytes("/lib/x.so.1") == b"x"
    assert root.lookup("/lib/x.so.1", follow_last=False).kind is NodeKind.SYMLINK
    assert root.lookup("/bin/tool").mode == 0o755


def test_package_symlink_escape(tmp_path: Path) -> None:
    package = tmp_path / "evil.tar.gz"
    package.write_bytes(tar_gz({"./etc/shadow": "../../../etc/shadow"}))
    with pytest.raises(SourceError, match="leads outside the root"):
        PackageRoot([package]).read_bytes("/etc/shadow")


def test_not_an_archive(tmp_path: Path) -> None:
    package = tmp_path / "broken.deb"
    package.write_text("this is not a package\n")
    with pytest.raises(SourceError) as caught:
        PackageRoot([package])
    assert str(caught.value).startswith(f"{package}: not a readable package archive")


def test_missing_package_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="package file not found"):
        PackageRoot([tmp_path / "nope.deb"])


def test_real_debs_read_in_place(default_root: PackageRoot) -> None:
    busybox = default_root.read_bytes("/bin/busybox")
    assert busybox.startswith(b"\x7fELF")
    kernels = default_root.glob("/boot/vmlinuz-*")
    assert len(kernels) == 1
    version = kernels[0].removeprefix("/boot/vmlinuz-")
    assert default_root.exists(f"/lib/modules/{version}/kernel/fs/ext4/ext4.ko")


def test_deb_built_with_dpkg_deb(tmp_path: Path) -> None:
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/hello").write_bytes(b"hi")
    os.chmod(tree / "usr/bin/hello", 0o751)
    (tree / "usr/share/doc/t").mkdir(parents=True)
    deb = tmp_path / "t.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    root = PackageRoot([deb])
    assert root.read_bytes("/usr/bin/hello") == b"hi"
    assert root.lookup("/usr/bin/hello").mode == 0o751
    assert not package_is_empty(deb)
    (tree / "usr/bin/hello").unlink()
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    assert package_is_empty(deb)


def test_package_cache_reads_only_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builder.image.packages as packages

    package = tmp_path / "a.tar.gz"
    package.write_bytes(
        tar_gz({"./bin/tool": b"tool", "./lib/x.so.1": "x.so.1.0", "./lib/x.so.1.0": b"x" * 9})
    )
    cache = PackageCache(tmp_path / "cache")
    cold = PackageRoot([package], cache)
    assert cold.read_bytes("/lib/x.so.1") == b"x" * 9
    assert cold.read_bytes("/bin/tool", keep=False) == b"tool"

    scans: list[Path] = []
    real_scan = packages._scan_package

    def counting_scan(path: Path, *rest):  # type: ignore[no-untyped-def]
        scans.append(path)
        return real_scan(path, *rest)

    monkeypatch.setattr(packages, "_scan_package", counting_scan)
    warm = PackageRoot([package], cache)
    assert warm.read_bytes("/lib/x.so.1") == b"x" * 9  # index and member from the cache
    assert warm.lookup("/lib/x.so.1", follow_last=False).kind is NodeKind.SYMLINK
    assert scans == []
    assert warm.read_bytes("/bin/tool") == b"tool"  # not kept before: one pass
    assert scans == [package]
    assert PackageRoot([package], cache).read_bytes("/bin/tool") == b"tool"
    assert scans == [package]

    # A damaged cache entry is noticed (size) and read again from the package.
    for member in (tmp_path / "cache").rglob("members/*"):
        member.write_bytes(b"short")
    assert PackageRoot([package], cache).read_bytes("/bin/tool") == b"tool"
    assert len(scans) == 2
    # A changed package is a new sha256: nothing stale is served.
    package.write_bytes(tar_gz({"./bin/tool": b"tool v2"}))
    assert PackageRoot([package], cache).read_bytes("/bin/tool") == b"tool v2"


def test_directory_walk_matches_the_generic_walk(tree: Path) -> None:
    from builder.image.sources import Root

    (tree / "usr/lib/a").mkdir()
    (tree / "usr/lib/a/z.ko").write_bytes(b"z")
    (tree / "usr/lib/b.ko").write_bytes(b"b")
    (tree / "usr/lib/linked").symlink_to("a")  # not entered
    root = DirectoryRoot(tree)
    fast = list(root.walk_files("/lib"))  # through the merged-/usr symlink
    assert fast == list(Root.walk_files(root, "/lib"))
    assert fast == ["/lib/a/z.ko", "/lib/b.ko", "/lib/libfoo.so.1.2"]
    with pytest.raises(SourceError, match="not a directory"):
        list(root.walk_files("/usr/lib/b.ko"))


def test_package_walk_matches_the_generic_walk(tmp_path: Path, default_root: PackageRoot) -> None:
    from builder.image.sources import Root

    package = tmp_path / "tree.tar"
    with tarfile.open(package, "w") as archive:
        for name, kind in [
            ("./usr/lib/a/z.ko", tarfile.REGTYPE),
            ("./usr/lib/b.ko", tarfile.REGTYPE),
            ("./usr/lib/linked", tarfile.SYMTYPE),  # not entered
            ("./lib", tarfile.SYMTYPE),  # merged /usr
        ]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = {"./usr/lib/linked": "a", "./lib": "usr/lib"}.get(name, "")
            archive.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    root = PackageRoot([package])
    fast = list(root.walk_files("/lib"))  # through the merged-/usr symlink
    assert fast == list(Root.walk_files(root, "/lib"))
    assert fast == ["/lib/a/z.ko", "/lib/b.ko"]
    assert list(root.walk_files("/")) == list(Root.walk_files(root, "/"))
    with pytest.raises(SourceError, match="not a directory"):
        list(root.walk_files("/usr/lib/b.ko"))
    (kernel,) = default_root.glob("/lib/modules/*")
    assert list(default_root.walk_files(kernel)) == list(Root.walk_files(default_root, kernel))
