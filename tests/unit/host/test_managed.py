"""Files outside our own directories: written whole, replaced or removed only when ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import OutputError
from builder.host.managed import is_managed, marker_line, remove_managed, write_managed


def test_new_then_replaced_then_removed(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "unit.service"
    assert write_managed(path, marker_line() + "a=1\n")
    assert not write_managed(path, marker_line() + "a=1\n"), "unchanged is not rewritten"
    assert write_managed(path, marker_line() + "a=2\n", mode=0o755)
    assert path.read_text().endswith("a=2\n") and path.stat().st_mode & 0o777 == 0o755
    assert sorted(entry.name for entry in path.parent.iterdir()) == ["unit.service"]
    assert remove_managed(path) and not path.exists()
    assert not remove_managed(path)


def test_someone_elses_file_is_never_touched(tmp_path: Path) -> None:
    path = tmp_path / "kdump-build.cfg"
    path.write_text('GRUB_CMDLINE_LINUX_DEFAULT="mine"\n')
    with pytest.raises(OutputError, match="not written by kdump-build; refusing to replace it"):
        write_managed(path, marker_line() + "x\n")
    assert not remove_managed(path)
    assert path.read_text() == 'GRUB_CMDLINE_LINUX_DEFAULT="mine"\n'


def test_a_symlink_is_not_ours(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.write_text(marker_line())
    link = tmp_path / "link"
    link.symlink_to(target)
    assert not is_managed(link)
    with pytest.raises(OutputError):
        write_managed(link, marker_line() + "x\n")
    assert target.read_text() == marker_line()


def test_text_without_the_marker_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without the marker"):
        write_managed(tmp_path / "f", "x\n")
