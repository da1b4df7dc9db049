"""The anchor for build times: dracut's minimal image of the same kernel and content.

The recipe's packages unpacked with dpkg-deb into a sysroot, depmod run there,
then `dracut --no-hostonly -m base --add-drivers "virtio_blk virtio_pci ext4"
--install /usr/bin/makedumpfile --compress zstd` (dracut-core, installed here
if missing) against that kernel's modules. dracut 059's `--compress zstd` is
`zstd -15 -q -T0` (level 15, all CPUs); the default recipe's is level 8.

Two timings, as docs/performance.md defines them:
- warm (`dracut_warm`): dracut run once on the sysroot, then timed `repeats`
  times more: its second run, as on any rebuild of an unchanged system;
- cold (`dracut_cold`): each of `repeats` runs on a freshly unpacked and
  depmod'ed sysroot: dracut's first run on a freshly installed kernel (the
  unpacking and depmod are the package's installation, not timed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import run

DRIVERS = "virtio_blk virtio_pci ext4"
COMPRESSION = "zstd -15 -q -T0 (dracut 059's --compress zstd)"


@dataclass(frozen=True)
class DracutRun:
    seconds: float  # the fastest of `runs`
    size: int
    version: str
    command: tuple[str, ...]
    modules: int  # module files lsinitrd lists in the image
    runs: tuple[float, ...] = ()  # every timed run


def ensure_dracut() -> str:
    """dracut-core's version, installing it first if missing."""
    if shutil.which("dracut") is None:
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "dracut-core"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return run(["dpkg-query", "-W", "-f=${Version}", "dracut-core"]).stdout


def unpack_sysroot(build_output: Path, cache: Path, sysroot: Path) -> None:
    """Every package a build read (its manifest.json) unpacked with dpkg-deb into `sysroot`."""
    manifest = json.loads((build_output / "manifest.json").read_text())
    wanted = {package["file"] for package in manifest["packages"]}
    for deb in sorted((cache / "debs").rglob("*.deb")):
        if deb.name in wanted:
            run(["dpkg-deb", "-x", str(deb), str(sysroot)])


def _command(work: Path, sysroot: Path, kernel_version: str) -> tuple[str, ...]:
    return (
        "dracut", "--force", "--quiet", "--no-hostonly", "--kver", kernel_version,
        "--kmoddir", str(sysroot / "lib/modules" / kernel_version), "-m", "base",
        "--add-drivers", DRIVERS, "--install", "/usr/bin/makedumpfile", "--compress", "zstd",
        str(work / "dracut.img"),
    )  # fmt: skip


def _timed(command: tuple[str, ...], work: Path) -> float:
    start = time.perf_counter()
    run(command, env={**os.environ, "TMPDIR": str(work)})
    return time.perf_counter() - start


def _result(work: Path, command: tuple[str, ...], version: str, times: list[float]) -> DracutRun:
    image = work / "dracut.img"
    listing = run(["lsinitrd", str(image)]).stdout if shutil.which("lsinitrd") else ""
    modules = sum(1 for line in listing.splitlines() if ".ko" in line)
    return DracutRun(min(times), image.stat().st_size, version, command, modules, tuple(times))


def dracut_warm(work: Path, sysroot: Path, kernel_version: str, repeats: int) -> DracutRun:
    """dracut's second run: one untimed run on the depmod'ed sysroot, then `repeats` timed."""
    version = ensure_dracut()
    run(["depmod", "-b", str(sysroot), kernel_version])
    command = _command(work, sysroot, kernel_version)
    _timed(command, work)  # the first run: warms whatever dracut reads
    return _result(work, command, version, [_timed(command, work) for _ in range(repeats)])


def dracut_cold(
    work: Path, build_output: Path, cache: Path, kernel_version: str, repeats: int
) -> DracutRun:
    """dracut's first run on a freshly installed kernel, `repeats` times: each on a sysroot
    unpacked and depmod'ed afresh from the packages `build_output` read."""
    version = ensure_dracut()
    times = []
    for attempt in range(repeats):
        sysroot = work / f"cold-sysroot-{attempt}"
        unpack_sysroot(build_output, cache, sysroot)
        run(["depmod", "-b", str(sysroot), kernel_version])
        command = _command(work, sysroot, kernel_version)
        times.append(_timed(command, work))
        shutil.rmtree(sysroot)
    return _result(work, command, version, times)
