"""The output directory: an unchanged rebuild writes nothing, any difference swaps in whole."""

from __future__ import annotations

import os
from pathlib import Path

from builder.atomic import MARKER
from builder.image.outputs import output_files, write_outputs
from builder.image.pipeline import BuildResult


def _identity(outdir: Path) -> tuple[int, ...]:
    return (outdir.stat().st_ino, *(path.stat().st_ino for path in sorted(outdir.iterdir())))


def test_an_unchanged_rebuild_leaves_the_output_as_it_is(
    default_build: BuildResult, tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    assert write_outputs(default_build, outdir) is True
    files = output_files(default_build)
    assert sorted(path.name for path in outdir.iterdir()) == sorted([*files, MARKER])
    before = _identity(outdir)
    assert write_outputs(default_build, outdir) is False
    assert _identity(outdir) == before  # not swapped, not rewritten


def test_any_difference_replaces_the_output_whole(
    default_build: BuildResult, tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    write_outputs(default_build, outdir)
    expected = {name: data for name, (data, _) in output_files(default_build).items()}
    edits = (
        lambda: (outdir / "cmdline.txt").write_text("edited\n"),
        lambda: os.chmod(outdir / "vmlinuz", 0o600),
        lambda: (outdir / "fit.json").unlink(),
        lambda: os.chmod(outdir, 0o700),
    )
    for edit in edits:
        edit()
        before = outdir.stat().st_ino
        assert write_outputs(default_build, outdir) is True
        assert outdir.stat().st_ino != before  # a new directory swapped in
        assert {path.name: path.read_bytes() for path in outdir.iterdir()
                if path.name != MARKER} == expected  # fmt: skip
        assert (outdir / "vmlinuz").stat().st_mode & 0o777 == 0o644
