"""The anchor for build times: dracut's minimal image of the same kernel and content.

The recipe's packages unpacked with dpkg-deb into a sysroot, depmod run there,
then `dracut --no-hostonly -m base --add-drivers "virtio_blk virtio_pci ext4"
--install /usr/bin/makedumpfile --compress zstd` (dracut-core, installed here
if missing) against that kernel's modules.
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


@dataclass(frozen=True)
class DracutRun:
    seconds: float
    size: int
    version: str
    command: tuple[str, ...]
    modules: int  # module files lsinitrd lists in the image


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


def dracut_minimal(work: Path, sysroot: Path, kernel_version: str, repeats: int = 2) -> DracutRun:
    """The fastest of `repeats` dracut runs (depmod'ed sysroot, same kernel and drivers)."""
    version = ensure_dracut()
    run(["depmod", "-b", str(sysroot), kernel_version])
    image = work / "dracut.img"
    command = (
        "dracut", "--force", "--quiet", "--no-hostonly", "--kver", kernel_version,
        "--kmoddir", str(sysroot / "lib/modules" / kernel_version), "-m", "base",
        "--add-drivers", DRIVERS, "--install", "/usr/bin/makedumpfile", "--compress", "zstd",
        str(image),
    )  # fmt: skip
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(command, env={**os.environ, "TMPDIR": str(work)})
        times.append(time.perf_counter() - start)
    listing = run(["lsinitrd", str(image)]).stdout if shutil.which("lsinitrd") else ""
    modules = sum(1 for line in listing.splitlines() if ".ko" in line)
    return DracutRun(min(times), image.stat().st_size, version, command, modules)
