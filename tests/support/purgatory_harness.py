"""Running a purgatory harness (tests/c/purgatory_<arch>_harness.c, linked with the shipped
object) under qemu-user, and the checks every architecture's harness must pass.

The harness's modes are tests/c/purgatory_harness.h's: `sha` hashes a stream
of {u32 length, bytes} messages in irregular chunks, `main` runs
purgatory_main() on two regions intact and with one byte changed.
"""

from __future__ import annotations

import hashlib
import random
import struct
import subprocess
from pathlib import Path


def run_harness(qemu_user: str, harness: Path, mode: str, stdin: bytes = b"") -> str:
    """The harness's output in `mode`, run under `qemu_user`."""
    result = subprocess.run([qemu_user, str(harness), mode], input=stdin, capture_output=True,
                            timeout=300, check=True)  # fmt: skip
    return result.stdout.decode()


def check_sha256_against_hashlib(qemu_user: str, harness: Path, seed: int) -> None:
    """The shipped SHA-256 gives hashlib's digest for every block boundary and random lengths."""
    rng = random.Random(seed)
    lengths = [*range(130), 255, 256, 257, 4095, 4096, 4097, 65536, 1 << 20]
    lengths += [rng.randrange(1, 300_000) for _ in range(40)]
    messages = [rng.randbytes(length) for length in lengths]
    stream = b"".join(struct.pack("<I", len(message)) + message for message in messages)
    digests = run_harness(qemu_user, harness, "sha", stream).split()
    assert digests == [hashlib.sha256(message).hexdigest() for message in messages]


def check_purgatory_main(qemu_user: str, harness: Path) -> None:
    """purgatory_main() accepts intact regions, rejects one changed byte, copies the backup."""
    # The harness fills its two regions with these patterns and flips one byte of the second.
    first = bytes((i * 7 + 3) & 0xFF for i in range(5000))
    second = bytes((i * 13 + 5) & 0xFF for i in range(8192))
    output = run_harness(qemu_user, harness, "main", hashlib.sha256(first + second).digest())
    assert output.split() == ["intact=1", "corrupt=0", "backup=ok"]
