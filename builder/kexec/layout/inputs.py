"""Read what a layout is planned from: a build's output directory, a memory map, sysfs.

The edge between files and the pure planners in this package.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.errors import LayoutError
from builder.kexec.crashinfo import CrashInfo, read_crash_info
from builder.kexec.layout import Layout
from builder.kexec.layout.arches import arch_layout
from builder.kexec.layout.x86_64 import X86_64Inputs
from builder.kexec.memmap import Kind, MemoryMap, parse_iomem

__all__ = ["BuildOutputs", "plan_layout", "read_build_outputs", "read_crash_info_for", "read_iomem"]

KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initrd.img"
CMDLINE_FILE = "cmdline.txt"
MANIFEST_FILE = "manifest.json"


class BuildOutputs:
    """The capture kernel, initrd and command line that `kdump-build build` wrote."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.kernel_path = outdir / KERNEL_FILE
        self.initrd_path = outdir / INITRD_FILE
        self.kernel = _read(self.kernel_path)
        self.initrd = _read(self.initrd_path)
        self.cmdline = _read(outdir / CMDLINE_FILE).decode(errors="replace").strip()
        self.backup_region = _recipe_backup_region(outdir / MANIFEST_FILE)


def _recipe_backup_region(manifest: Path) -> bool:
    """Whether the build's recipe asked for the backup region (kernel.backup_region)."""
    if not manifest.exists():
        return False
    try:
        kexec = json.loads(_read(manifest)).get("kexec", {})
    except (ValueError, AttributeError):
        raise LayoutError(f"{manifest}: not a kdump-build manifest (invalid JSON)") from None
    return bool(kexec.get("backup_region", False)) if isinstance(kexec, dict) else False


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise LayoutError(f"{path}: {error.strerror or error}") from None


def read_build_outputs(outdir: Path) -> BuildOutputs:
    """Read OUTDIR/vmlinuz, initrd.img and cmdline.txt."""
    if not outdir.is_dir():
        raise LayoutError(f"{outdir}: not a directory (run `kdump-build build -o {outdir}` first)")
    return BuildOutputs(outdir)


def read_iomem(path: Path) -> MemoryMap:
    """Parse a /proc/iomem file (live or captured)."""
    return parse_iomem(_read(path).decode(errors="replace"), source=str(path))


def read_crash_info_for(root: Path, memory: MemoryMap) -> CrashInfo:
    """`read_crash_info` with the "Kernel code" start of `memory` as a fallback."""
    code = [resource.range.start for resource, _ in memory.walk() if resource.name == "Kernel code"]
    return read_crash_info(root, kernel_code_start=code[0] if code else None)


def plan_layout(
    arch: str,
    outputs: BuildOutputs,
    memory: MemoryMap,
    info: CrashInfo | None,
    *,
    backup: bool | None = None,
) -> Layout:
    """Plan the crash layout of a build for a memory map.

    `backup` None means what the build's recipe said (kernel.backup_region).
    """
    if not memory.of_kind(Kind.CRASH_KERNEL):
        raise LayoutError("the memory map has no 'Crash kernel' range (boot with crashkernel=)")
    planner = arch_layout(arch)
    inputs = X86_64Inputs(
        kernel=outputs.kernel,
        initrd=outputs.initrd,
        cmdline=outputs.cmdline,
        memory=memory,
        info=info,
        backup=outputs.backup_region if backup is None else backup,
        kernel_name=str(outputs.kernel_path),
    )
    return planner.plan(inputs)
