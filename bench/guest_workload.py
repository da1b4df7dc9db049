"""Leave a guest's memory as a used machine leaves it, then hold it until the crash.

Run inside the 1 GiB main guest of `bench.vmcore_capture` (the host's venv over
9p). What dump levels exclude must be there to exclude, with real contents
(makedumpfile compresses page by page, so what a page holds decides its size):
page cache (files read over 9p with cache=loose stay cached), user pages (file
contents copied into this process and kept), and free pages that are not zero
(a larger copy made and released: its pages go back to the buddy allocator
holding the data). The files are the host's libraries in a fixed order.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20
LIBRARIES = Path("/usr/lib/x86_64-linux-gnu")
CACHED_MIB = 128  # read through the page cache, and kept as user pages
FREED_MIB = 256  # written, then released: free pages with contents


def _contents(limit: int) -> Iterator[bytes]:
    """Regular files under LIBRARIES in path order, until `limit` bytes are read."""
    read = 0
    for directory, subdirectories, names in os.walk(LIBRARIES):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()[: limit - read]
            read += len(data)
            yield data
            if read >= limit:
                return


def _released(kept: list[bytes], size: int) -> None:
    """Fill `size` bytes with the kept contents over and over, then let them go."""
    freed = bytearray(size)
    offset = 0
    while offset < size:
        for data in kept:
            freed[offset : offset + len(data)] = data[: size - offset]
            offset += len(data)
            if offset >= size:
                break
    del freed  # a large allocation is its own mapping: released, its pages are free


def main() -> None:
    kept = list(_contents(CACHED_MIB * MIB))
    _released(kept, FREED_MIB * MIB)
    print(f"workload: {sum(map(len, kept)) // MIB} MiB cached and kept, "
          f"{FREED_MIB} MiB freed", flush=True)  # fmt: skip
    Path(sys.argv[1]).write_text("ready\n")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
