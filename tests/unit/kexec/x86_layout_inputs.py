"""What the x86_64 layout tests share: the default build's layout inputs on captured files.

The /proc/iomem samples (tests/data/iomem/) and the sysfs values captured
in a QEMU guest (tests/data/sysfs/, made by `kdump-build capture-sysfs`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.arch import Arch
from builder.image.pipeline import BuildResult
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.layout.core import LayoutInputs, LayoutOptions
from builder.kexec.layout.inputs import read_crash_info_for
from builder.kexec.memmap import MemoryMap, parse_iomem
from tests.support.paths import REPO

IOMEM = REPO / "tests" / "data" / "iomem"
SYSFS = REPO / "tests" / "data" / "sysfs" / "qemu-1g-crashkernel-192m"
SAMPLES = sorted(IOMEM.glob("*.txt"))
MIB = 1 << 20


def memory_sample(name: str) -> MemoryMap:
    """The captured /proc/iomem `name` (a file in tests/data/iomem/)."""
    return parse_iomem((IOMEM / name).read_text(), source=name)


def layout_inputs(build: BuildResult, memory: MemoryMap, info: CrashInfo | None = None, *,
                  cmdline: str | None = None, backup: bool = False) -> LayoutInputs:  # fmt: skip
    """The layout inputs of `build`'s kernel, initrd and command line on `memory`."""
    return LayoutInputs(
        kernel=build.kernel_bytes,
        initrd=build.initrd,
        cmdline=build.cmdline if cmdline is None else cmdline,
        memory=memory,
        info=info,
        options=LayoutOptions(backup=backup),
    )


def sample_crash_info() -> CrashInfo:
    """The crash notes, vmcoreinfo and kcore headers captured in a 1 GiB QEMU guest."""
    iomem = parse_iomem((SYSFS / "proc" / "iomem").read_text())
    return read_crash_info_for(SYSFS, iomem, Arch.X86_64)


def copy_build(outdir: Path, destination: Path) -> Path:
    """A copy of the build in `outdir` without any layout written into it."""
    shutil.copytree(outdir, destination)
    for stale in ("layout.json", "segments"):
        path = destination / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return destination
