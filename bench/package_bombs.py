"""Decompression bombs against the package reader, with its real limits: peak memory.

Each bomb is a few MiB of concatenated gzip members whose tar (or cpio) members
are zeros: one member of 8 GiB (refused on its header), and twelve of 256 MiB
(3 GiB in all, refused once the package's 2 GiB are read). Each is opened in a
fresh interpreter, which reports its peak RSS (ru_maxrss) before and after.

    .venv/bin/python -m bench.package_bombs
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tests.support.packages import measure_bomb, write_bomb

GiB = 1 << 30
MiB = 1 << 20
ONE_MEMBER = [("zeros", 8 * GiB)]
ONE_RPM_MEMBER = [("zeros", 3 * GiB + 512 * MiB)]  # newc's size field stops below 4 GiB
MANY_MEMBERS = [(f"zeros{index}", 256 * MiB) for index in range(12)]
BOMBS = [
    ("tar.gz", ONE_MEMBER), ("deb", ONE_MEMBER), ("rpm", ONE_RPM_MEMBER),
    ("tar.gz", MANY_MEMBERS), ("deb", MANY_MEMBERS), ("rpm", MANY_MEMBERS),
]  # fmt: skip


def main() -> None:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="kdump-build-bombs-") as scratch:
        for fmt, members in BOMBS:
            bomb = write_bomb(Path(scratch) / f"bomb-{len(rows)}", fmt, members)
            row: dict[str, object] = {"format": fmt, "members": len(members)}
            row["file_bytes"] = bomb.stat().st_size
            row["expands_to"] = sum(size for _, size in members)
            rows.append({**row, **measure_bomb(bomb)})
            bomb.unlink()
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
