"""makedumpfile's flattened format, checked against `makedumpfile -R` itself."""

from __future__ import annotations

import io
import random
import subprocess
from pathlib import Path

import pytest

from builder.binfmt.flat import (
    HEADER_SIZE,
    flat_block,
    flat_end,
    flat_header,
    restore_file,
    restore_stream,
)
from builder.errors import DumpError, OutputError
from tests.conftest import run_cli


def _stream(seed: int) -> tuple[bytes, int]:
    """Blocks out of order, overlapping, with holes; never empty (makedumpfile -R refuses)."""
    rng = random.Random(seed)
    parts = [flat_header()]
    for _ in range(rng.randint(1, 40)):
        offset = rng.randrange(0, 1 << 20)
        parts.append(flat_block(offset, rng.randbytes(rng.randrange(1, 70000))))
    parts.append(flat_end())
    body = b"".join(parts)
    return body, len(body)


@pytest.mark.parametrize("seed", range(5))
def test_restore_matches_makedumpfile(tmp_path: Path, seed: int) -> None:
    stream, length = _stream(seed)
    # Stale bytes after the end marker, as on a raw device, are not part of the dump.
    source = tmp_path / "dump.flat"
    source.write_bytes(stream + random.Random(seed).randbytes(5000))
    theirs = tmp_path / "theirs"
    with open(source, "rb") as handle:
        subprocess.run(
            ["makedumpfile", "-R", str(theirs)], stdin=handle, check=True, capture_output=True
        )
    ours = tmp_path / "ours"
    result = run_cli("restore", str(source), str(ours))
    assert result.returncode == 0, result.stderr
    assert ours.read_bytes() == theirs.read_bytes()
    assert f"({length:,} bytes of stream)" in result.stdout


def test_incomplete_and_foreign_streams_are_errors() -> None:
    stream, _ = _stream(7)
    with pytest.raises(DumpError, match="ends without its end marker"):
        restore_stream(io.BytesIO(stream[:-16]), io.BytesIO())
    with pytest.raises(DumpError, match=r"cut short \(an incomplete dump\)"):
        restore_stream(io.BytesIO(stream[: HEADER_SIZE + 16 + 1]), io.BytesIO())
    with pytest.raises(DumpError, match="byte offset 0: not a makedumpfile flattened stream"):
        restore_stream(io.BytesIO(b"\x7fELF" + bytes(5000)), io.BytesIO())
    bad_block = flat_header() + (-5).to_bytes(8, "big", signed=True) + (1).to_bytes(8, "big")
    with pytest.raises(DumpError, match=f"byte offset {HEADER_SIZE}: corrupt block header"):
        restore_stream(io.BytesIO(bad_block), io.BytesIO())


def test_cli_error_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    stream, _ = _stream(3)
    source = tmp_path / "partial.flat"
    source.write_bytes(stream[:-16])
    output = tmp_path / "vmcore"
    result = run_cli("restore", str(source), str(output))
    assert result.returncode == 2
    assert result.stderr.startswith(f"kdump-build: error: {source}: byte offset ")
    assert "end marker" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["partial.flat"]
    # A zeroed header (what /init leaves after a failed raw write) is not a dump either.
    source.write_bytes(bytes(HEADER_SIZE) + stream[HEADER_SIZE:])
    result = run_cli("restore", str(source), str(output))
    assert "not a makedumpfile flattened stream" in result.stderr
    result = run_cli("restore", str(tmp_path / "missing"), str(output))
    assert result.returncode == 2 and "No such file or directory" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["partial.flat"]


def test_restore_refuses_an_existing_destination(tmp_path: Path) -> None:
    stream, _ = _stream(3)
    source = tmp_path / "vmcore.flat"
    source.write_bytes(stream)
    output = tmp_path / "vmcore"
    output.write_bytes(b"an earlier dump")
    with pytest.raises(OutputError, match="already exists; refusing to overwrite it"):
        restore_file(source, output)
    result = run_cli("restore", str(source), str(output))
    assert result.returncode == 2
    assert (
        result.stderr == f"kdump-build: error: {output}: already exists; refusing to overwrite it\n"
    )
    assert output.read_bytes() == b"an earlier dump"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["vmcore", "vmcore.flat"]
    output.unlink()
    assert restore_file(source, output).size == output.stat().st_size
    assert output.stat().st_mode & 0o777 == 0o600  # a vmcore is memory
