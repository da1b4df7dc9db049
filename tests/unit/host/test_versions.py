"""A kernel version from a hook is a name, never a path (issue 21: `kernel-removed
../../../DIR` deleted DIR, an ordinary build's output directory elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.atomic import MARKER, MARKER_TEXT
from builder.errors import HostError
from builder.host import boot
from builder.host.paths import HostPaths
from tests.conftest import run_cli


def other_build(tmp_path: Path) -> Path:
    """An ordinary build's output directory outside /var/lib/kdump-build."""
    directory = tmp_path / "elsewhere" / "build"
    directory.mkdir(parents=True)
    (directory / MARKER).write_bytes(MARKER_TEXT)
    (directory / "initrd.img").write_bytes(b"keep me")
    return directory


@pytest.mark.parametrize("version", ["../../../../elsewhere/build", "a/b", "..", ".hidden", ""])
def test_kernel_removed_refuses_a_path(tmp_path: Path, version: str) -> None:
    root = tmp_path / "root"
    paths = HostPaths(root)
    paths.captures.mkdir(parents=True)
    build = other_build(tmp_path)
    assert (paths.captures / "../../../../elsewhere/build").resolve() == build
    said: list[str] = []
    with pytest.raises(HostError, match=r"not a kernel version \(a name like .*never a path"):
        boot.kernel_removed(version, said.append, paths)
    assert said == [] and (build / "initrd.img").read_bytes() == b"keep me"
    with pytest.raises(HostError, match="not a kernel version"):
        boot.kernel_installed(version, None, said.append, paths)


def test_a_name_that_names_no_kernel_is_refused(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    paths.captures.mkdir(parents=True)
    with pytest.raises(HostError, match=r"^6\.1\.0-99-amd64: names no kernel and no capture"):
        boot.kernel_removed("6.1.0-99-amd64", print, paths)
    with pytest.raises(HostError, match=r"^6\.1\.0-99-amd64: names no installed kernel \("):
        boot.kernel_installed("6.1.0-99-amd64", None, print, paths)
    # A kernel whose modules are still there (the package's postrm runs before purge):
    # nothing to remove, and no error.
    (paths.modules / "6.1.0-98-amd64").mkdir(parents=True)
    boot.kernel_removed("6.1.0-98-amd64", print, paths)


def test_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    for command in ("kernel-removed", "kernel-installed"):
        result = run_cli(command, "../../../tmp/x")
        assert result.returncode == 2, result.stderr
        assert result.stderr == (
            "kdump-build: error: '../../../tmp/x': not a kernel version (a name like "
            "6.1.0-9-amd64, never a path with / or ..)\n"
        )
