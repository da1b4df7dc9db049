"""The shared cache under load: damaged entries never used, concurrent builds, a full disk.

Before the digest (f0add04) an entry was its payload alone: a flipped byte in
a cached compressed archive went into the initrd, and a write that failed on
a full disk left its temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from builder.image.cache import (
    ENTRY_MAGIC,
    entry_file,
    load_cache_entry,
    load_json_entry,
    store_cache_entry,
)
from builder.image.outputs import manifest
from builder.image.pipeline import BuildResult, plan_build
from builder.recipe.parse import load_recipe
from tests.support import caches, kills
from tests.support.paths import REPO


def test_round_trip_and_damage_is_discarded(tmp_path: Path) -> None:
    entry = tmp_path / "ab" / "key"
    store_cache_entry(entry, b"payload")
    assert load_cache_entry(entry) == b"payload"
    stored = entry_file(entry)
    raw = bytearray(stored.read_bytes())
    for position in (0, len(ENTRY_MAGIC) + 3, len(raw) - 1):  # magic, digest, payload
        damaged = bytearray(raw)
        damaged[position] ^= 0x01
        stored.write_bytes(bytes(damaged))
        assert load_cache_entry(entry) is None
        assert not stored.exists()  # removed, so the caller's fresh value replaces it
    stored.write_bytes(bytes(raw[:-1]))  # cut short, as after a crash
    assert load_cache_entry(entry) is None
    # The format before the digest is not read as an entry, and its file is not touched.
    entry.write_bytes(b"payload")
    assert load_cache_entry(entry) is None and entry.read_bytes() == b"payload"


def test_json_entry_that_is_not_json_is_none(tmp_path: Path) -> None:
    store_cache_entry(tmp_path / "doc", b"{not json")
    assert load_json_entry(tmp_path / "doc") is None
    store_cache_entry(tmp_path / "doc", b'{"a": 1}')
    assert load_json_entry(tmp_path / "doc") == {"a": 1}


def test_writers_of_one_key_at_once_leave_one_whole_entry(tmp_path: Path) -> None:
    """Threads (as compress_archives uses) and the reader race on one key."""
    entry = tmp_path / "key"
    payload = os.urandom(1 << 20)
    seen: list[bytes | None] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(load_cache_entry(entry))

    reader = threading.Thread(target=read)
    reader.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store_cache_entry(entry, payload), range(64)))
    stop.set()
    reader.join()
    assert {value for value in seen if value is not None} <= {payload}
    assert load_cache_entry(entry) == payload
    assert caches.temporary_files(tmp_path) == []


def _store_under_file_size_limit(directory: str, limit: int) -> None:
    """Child process: a file size limit below the entry, as a nearly full disk."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    store_cache_entry(Path(directory) / "big", b"x" * (4 * limit))
    store_cache_entry(Path(directory) / "small", b"fits")


def test_write_past_the_file_size_limit_leaves_nothing(tmp_path: Path) -> None:
    import multiprocessing

    store_cache_entry(tmp_path / "big", b"an older entry")
    child = multiprocessing.get_context("fork").Process(
        target=_store_under_file_size_limit, args=(str(tmp_path), 4096)
    )
    child.start()
    child.join()
    assert child.exitcode == 0  # SIGXFSZ is ignored by Python: the write fails with EFBIG
    assert load_cache_entry(tmp_path / "big") == b"an older entry"
    assert load_cache_entry(tmp_path / "small") == b"fits"
    assert caches.temporary_files(tmp_path) == []


# ---------------------------------------------------------------------------
# Whole builds on private caches. The recipes read a cut-down copy of the
# kernel package (tests/support/caches.py), so a cold build takes seconds.


Outputs = tuple[bytes, bytes, str, object]


def _outputs(result: BuildResult) -> Outputs:
    fit = result.fit.to_json() if result.fit is not None else None
    return result.initrd, result.kernel_bytes, result.cmdline, (manifest(result), fit)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small recipes: the default one, one with lz4, one with more modules."""
    directory = tmp_path_factory.mktemp("small")
    kernel = caches.small_kernel_package(directory / "kernel.tar.gz")
    return {
        "default": caches.small_recipe(directory / "default.toml", kernel, {}),
        "lz4": caches.small_recipe(
            directory / "lz4.toml", kernel, {"initrd": {"compression": "lz4"}}
        ),
        "more": caches.small_recipe(
            directory / "more.toml", kernel, {"initrd": {"modules": list(caches.MORE_MODULES)}}
        ),
    }


@pytest.fixture(scope="module")
def reference(small: dict[str, Path]) -> Outputs:
    """The small default recipe built with the shared cache, serially."""
    return _outputs(plan_build(load_recipe(small["default"])))


def _flip_payload_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(ENTRY_MAGIC) + 32 + (len(raw) - len(ENTRY_MAGIC) - 32) // 2] ^= 0x20
    path.write_bytes(bytes(raw))


def test_every_damaged_entry_is_rebuilt_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, Path], reference: Outputs
) -> None:
    cache = caches.private_cache(tmp_path / "cache")
    monkeypatch.setenv("KDUMP_BUILD_CACHE", str(cache))
    recipe = load_recipe(small["default"])
    assert _outputs(plan_build(recipe)) == reference
    stored = list(caches.entries(cache))
    kinds = {path.relative_to(cache).parts[0] for path in stored}
    # Package hashes, indexes and members; compressed archives; ELF facts; module
    # index and aliases; apt's resolution of the recipe's package names.
    assert kinds == {"packages", "compressed", "elf", "modules", "apt"}, kinds
    for path in stored:
        _flip_payload_byte(path)
    assert len(caches.damaged_entries(cache)) == len(stored)
    assert _outputs(plan_build(recipe)) == reference
    assert caches.damaged_entries(cache) == []
    assert set(caches.entries(cache)) >= set(stored)  # each one written again


def _build_process(recipe: Path, outdir: Path, cache: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "KDUMP_BUILD_CACHE": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-m", "builder.cli", str(recipe), "-o", str(outdir), "-q"],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _run_all(jobs: list[tuple[Path, Path]], cache: Path) -> None:
    processes = [_build_process(recipe, outdir, cache) for recipe, outdir in jobs]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr


def test_concurrent_builds_equal_serial_builds(tmp_path: Path, small: dict[str, Path]) -> None:
    """Four builds at once (two of one recipe, two others) on one cold cache, then warm."""
    from builder.image.cache import default_cache_dir

    plan = [small["default"], small["default"], small["lz4"], small["more"]]
    for name in ("default", "lz4", "more"):  # serially, on the shared cache
        _run_all([(small[name], tmp_path / "serial" / name)], default_cache_dir())
    expected = [kills.tree_digest(tmp_path / "serial" / recipe.stem) for recipe in plan]
    shared_cache = caches.private_cache(tmp_path / "shared-cache")
    for round_name in ("cold", "warm"):
        outdirs = [tmp_path / round_name / str(index) for index in range(len(plan))]
        _run_all(list(zip(plan, outdirs, strict=True)), shared_cache)
        for index, outdir in enumerate(outdirs):
            assert kills.tree_digest(outdir) == expected[index], (round_name, plan[index])
    assert caches.damaged_entries(shared_cache) == []
    assert caches.temporary_files(shared_cache) == []


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mountpoint` (the tests run as root, as ./bootstrap does)."""
    mountpoint.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"mounting a tmpfs needs root: {result.stderr}"
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_full_disk_while_caching_leaves_the_cache_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, Path], reference: Outputs
) -> None:
    """The derived cache on a 2 MiB tmpfs: it fills during the build, which still succeeds."""
    with small_tmpfs(tmp_path / "small", "2m") as mounted:
        cache = caches.private_cache(mounted / "cache")
        monkeypatch.setenv("KDUMP_BUILD_CACHE", str(cache))
        recipe = load_recipe(small["default"])
        for _ in range(2):  # filling it, then finding it full
            assert _outputs(plan_build(recipe)) == reference
            assert caches.damaged_entries(cache) == []
            assert caches.temporary_files(cache) == []
        usage = os.statvfs(mounted)
        assert usage.f_bavail * usage.f_frsize < 256 << 10  # it did fill up
        assert list(caches.entries(cache))  # and what fit is whole
