"""kdump-load's hashing: its SHA-256 (loader/sha256-fast.c) and the plan's digest-prefix.

The loader's SHA-256 is its own, written for speed (the purgatory's sha256.c
stays as its shipped bytes were built); here it is held to hashlib over block
boundaries, pieces and runs of zeros. The digest-prefix line lets kdump-load
start the purgatory digest after the kernel and initrd (their bytes checked
against the plan first): these tests show the loader uses it, that without it
the bytes are the same, and that a wrong state shows in the purgatory segment
(the byte-identity tests in test_kdump_load.py compare it with Python's).
"""

from __future__ import annotations

import ctypes
import hashlib
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.arch import Arch
from builder.kexec.plan import PLAN_FILE
from builder.kexec.plan.digest_prefix import digest_prefix_line, finish_sha256
from tests.support.paths import REPO
from tests.unit.kexec.test_kdump_load import loader_segments
from tests.unit.kexec.x86_layout_inputs import SYSFS

LOADER = REPO / "builder" / "kexec" / "loader"
HARNESS = REPO / "tests" / "c" / "purgatory_sha256_harness.c"
STATE_BYTES = 8 * 4 + 8 + 8 + 64  # struct sha256_state


@pytest.fixture(scope="module")
def loader_sha(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    library = tmp_path_factory.mktemp("sha") / "libloadersha.so"
    command = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
               "-I", str(REPO / "builder" / "kexec" / "purgatory"),
               str(LOADER / "sha256-fast.c"), str(HARNESS), "-o", str(library)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(library))


def digest(library: ctypes.CDLL, data: bytes, pieces: list[int]) -> bytes:
    out = ctypes.create_string_buffer(32)
    array = (ctypes.c_size_t * max(len(pieces), 1))(*pieces)
    library.harness_sha256(data, ctypes.c_size_t(len(data)), array,
                           ctypes.c_size_t(len(pieces)), out)  # fmt: skip
    return out.raw


def digest_with_zeros(library: ctypes.CDLL, head: bytes, zeros: int, tail: bytes) -> bytes:
    state, out = ctypes.create_string_buffer(STATE_BYTES), ctypes.create_string_buffer(32)
    library.sha256_init(state)
    library.sha256_update(state, head, ctypes.c_size_t(len(head)))
    library.sha256_update_zeros(state, ctypes.c_uint64(zeros))
    library.sha256_update(state, tail, ctypes.c_size_t(len(tail)))
    library.sha256_final(state, out)
    return out.raw


@pytest.mark.parametrize("length", [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000])
def test_loader_sha256_block_boundaries(loader_sha: ctypes.CDLL, length: int) -> None:
    data = random.Random(length).randbytes(length)
    assert digest(loader_sha, data, []) == hashlib.sha256(data).digest()
    assert digest(loader_sha, data, [1, 63]) == hashlib.sha256(data).digest()


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=200), zeros=st.integers(0, 300), tail=st.binary(max_size=100))
def test_loader_sha256_zeros_are_zero_bytes(
    loader_sha: ctypes.CDLL, head: bytes, zeros: int, tail: bytes
) -> None:
    expected = hashlib.sha256(head + bytes(zeros) + tail).digest()
    assert digest_with_zeros(loader_sha, head, zeros, tail) == expected


def test_loader_sha256_large(loader_sha: ctypes.CDLL) -> None:
    data = random.Random(3).randbytes(3 << 20)
    assert digest(loader_sha, data, [1 << 20, 4095, 1]) == hashlib.sha256(data).digest()
    expected = hashlib.sha256(data[:5] + bytes(5 << 20) + data).digest()
    assert digest_with_zeros(loader_sha, data[:5], 5 << 20, data) == expected


def test_digest_prefix_is_the_state_after_kernel_and_initrd() -> None:
    kernel, initrd = random.Random(1).randbytes(9000), random.Random(2).randbytes(5000)
    lines = ["bzimage-payload-offset 0x1000", "bzimage-memsz 0x5000"]
    [line] = digest_prefix_line(lines, kernel, initrd)
    words = [int(word, 16) for word in line.split()[1:]]
    assert words[:4] == [9000 - 0x1000, 0x5000, 5000, 0x2000]
    prefix = kernel[0x1000:] + bytes(0x5000 - (9000 - 0x1000)) + initrd + bytes(0x2000 - 5000)
    assert finish_sha256(tuple(words[4:]), len(prefix)) == hashlib.sha256(prefix).digest()
    image = digest_prefix_line(["image-memsz 0x3000"], kernel[:8192], initrd)
    assert [int(word, 16) for word in image[0].split()[1:5]] == [8192, 0x3000, 5000, 0x2000]


def test_no_digest_prefix_without_a_kernel_memsz_that_holds_the_kernel() -> None:
    assert digest_prefix_line(["dtb-max 0x1000"], b"k" * 100, b"i") == []
    assert digest_prefix_line(["image-memsz 0x1000"], b"k" * 5000, b"i") == []
    assert digest_prefix_line(["image-memsz 0x2000"], b"k" * 5000, b"") == []


def with_plan(outdir: Path, tmp_path: Path, edit: str) -> Path:
    """A copy of `outdir` whose digest-prefix line is replaced by `edit` (empty: removed)."""
    copy = tmp_path / "out"
    shutil.copytree(outdir, copy)
    plan = (copy / PLAN_FILE).read_text().splitlines()
    [index] = [n for n, line in enumerate(plan) if line.startswith("digest-prefix ")]
    plan[index : index + 1] = [edit] if edit else []
    (copy / PLAN_FILE).write_text("\n".join(plan) + "\n")
    return copy


def prefix_words(outdir: Path) -> list[str]:
    plan = (outdir / PLAN_FILE).read_text().splitlines()
    return next(line.split() for line in plan if line.startswith("digest-prefix "))


def test_loader_continues_from_the_digest_prefix(outdir: Path, tmp_path: Path) -> None:
    iomem = SYSFS / "proc/iomem"
    ours = loader_segments(Arch.X86_64, outdir, iomem, SYSFS)
    # without the line the loader hashes kernel, zeros and initrd itself: the same bytes
    assert loader_segments(Arch.X86_64, with_plan(outdir, tmp_path / "a", ""), iomem, SYSFS) == ours
    # other sizes than its segments': not used
    words = prefix_words(outdir)
    resized = " ".join([*words[:2], hex(int(words[2], 16) + 0x1000), *words[3:]])
    other = with_plan(outdir, tmp_path / "b", resized)
    assert loader_segments(Arch.X86_64, other, iomem, SYSFS) == ours
    # a wrong state with the right sizes: used, so only the purgatory (its digest) differs
    state = struct.pack(">I", int(words[5], 16) ^ 1).hex()
    wrong = with_plan(outdir, tmp_path / "c", " ".join([*words[:5], "0x" + state, *words[6:]]))
    changed = loader_segments(Arch.X86_64, wrong, iomem, SYSFS)
    assert [a == b for a, b in zip(changed, ours, strict=True)] == [True] * 5 + [False, True]
    assert changed[5].split()[1] == "purgatory"
