"""Read what a layout is planned from: a build's output directory, a memory map, sysfs.

The edge between files and the pure planners in this package; `plan_layout`
(in the package itself) plans from what these functions read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from builder.arch import Arch, parse_arch
from builder.errors import LayoutError
from builder.kexec.crashinfo import DEVICE_TREE, CrashInfo, read_crash_info, read_device_tree
from builder.kexec.layout.core import Firmware
from builder.kexec.memmap import Kind, MemoryMap, Range, parse_iomem
from builder.kexecfs import KexecFile, read_cma_ranges

__all__ = [
    "BuildOutputs",
    "read_build_outputs",
    "read_crash_cma",
    "read_crash_info_for",
    "read_firmware",
    "read_iomem",
    "read_manifest",
]

KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initrd.img"
CMDLINE_FILE = "cmdline.txt"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class BuildOutputs:
    """The capture kernel, initrd and command line that `kdump-build build` wrote."""

    outdir: Path
    kernel_path: Path
    initrd_path: Path
    kernel: bytes
    initrd: bytes
    cmdline: str
    arch: Arch | None  # manifest.json "arch"; None in a directory without a manifest
    backup_region: bool  # the recipe's kernel.backup_region

    def target_arch(self, override: Arch | None = None) -> Arch:
        """`override` (--arch) if given, else the architecture the build was made for."""
        if override is not None:
            return override
        if self.arch is None:
            raise LayoutError(
                f"{self.outdir / MANIFEST_FILE}: records no architecture (give --arch)"
            )
        return self.arch


def read_manifest(path: Path) -> dict[str, object] | None:
    if not path.exists():
        return None
    text = _read(path)
    if not text.strip():
        raise LayoutError(f"{path}: empty file (not a kdump-build manifest)")
    try:
        manifest = json.loads(text)
    except ValueError:
        raise LayoutError(f"{path}: not a kdump-build manifest (invalid JSON)") from None
    if not isinstance(manifest, dict):
        raise LayoutError(f"{path}: not a kdump-build manifest (not a JSON object)")
    return manifest


def _manifest_arch(manifest: dict[str, object] | None, path: Path) -> Arch | None:
    value = manifest.get("arch") if manifest is not None else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise LayoutError(f"{path}: arch: expected a string, found {value!r}")
    return parse_arch(value, f"{path}: arch")


def _recipe_backup_region(manifest: dict[str, object] | None) -> bool:
    """Whether the build's recipe asked for the backup region (kernel.backup_region)."""
    kexec = manifest.get("kexec", {}) if manifest is not None else {}
    return bool(kexec.get("backup_region", False)) if isinstance(kexec, dict) else False


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise LayoutError(f"{path}: {error.strerror or error}") from None


def _read_nonempty(path: Path) -> bytes:
    data = _read(path)
    if not data.strip():
        raise LayoutError(f"{path}: empty file")
    return data


def _check_against_manifest(path: Path, data: bytes, recorded: object, manifest: Path) -> None:
    """The file is the one the build wrote: its size and sha256 as manifest.json records."""
    if not isinstance(recorded, dict) or "sha256" not in recorded:
        return  # an older manifest without the record: nothing to compare
    if len(data) != recorded.get("size", len(data)) or (
        hashlib.sha256(data).hexdigest() != recorded["sha256"]
    ):
        raise LayoutError(
            f"{path}: does not match {manifest} ({len(data)} bytes, recorded "
            f"{recorded.get('size')}; truncated or replaced: build again)"
        )


def read_build_outputs(outdir: Path) -> BuildOutputs:
    """Read OUTDIR/vmlinuz, initrd.img, cmdline.txt and what manifest.json records.

    With a manifest, the kernel and initrd must be the bytes it records, so
    a truncated or swapped file is refused here rather than loaded.
    """
    if not outdir.is_dir():
        raise LayoutError(f"{outdir}: not a directory (run `kdump-build build -o {outdir}` first)")
    manifest_path = outdir / MANIFEST_FILE
    manifest = read_manifest(manifest_path)
    kernel = _read_nonempty(outdir / KERNEL_FILE)
    initrd = _read_nonempty(outdir / INITRD_FILE)
    cmdline = _read_nonempty(outdir / CMDLINE_FILE).decode(errors="replace").strip()
    if manifest is not None:
        _check_against_manifest(outdir / KERNEL_FILE, kernel, manifest.get("kernel"), manifest_path)
        _check_against_manifest(outdir / INITRD_FILE, initrd, manifest.get("initrd"), manifest_path)
        recorded = manifest.get("cmdline", cmdline)
        if recorded != cmdline:
            raise LayoutError(
                f"{outdir / CMDLINE_FILE}: does not match {manifest_path} "
                f"({cmdline!r}, recorded {recorded!r}; build again)"
            )
    return BuildOutputs(
        outdir=outdir,
        kernel_path=outdir / KERNEL_FILE,
        initrd_path=outdir / INITRD_FILE,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        arch=_manifest_arch(manifest, manifest_path),
        backup_region=_recipe_backup_region(manifest),
    )


def read_iomem(path: Path) -> MemoryMap:
    """Parse a /proc/iomem file (live or captured); it must hold a crash region."""
    memory = parse_iomem(_read_nonempty(path).decode(errors="replace"), source=str(path))
    if not memory.of_kind(Kind.CRASH_KERNEL):
        raise LayoutError(
            f"{path}: no 'Crash kernel' range (boot with crashkernel=, or the file is cut short)"
        )
    return memory


def read_crash_cma(root: Path, memory: MemoryMap) -> MemoryMap:
    """`memory` with the `crashkernel=,cma` ranges the kernel of `root` reports (`/` live,
    or a captured directory); unchanged where it reports none or has no such file."""
    ranges = read_cma_ranges(root / "sys" / "kernel") or ()
    try:
        return memory.with_crash_cma(Range(start, end + 1) for start, end in ranges)
    except LayoutError as error:
        where = KexecFile.CRASH_CMA_RANGES.path(root / "sys" / "kernel")
        raise LayoutError(f"{where}: {error}") from None


def read_crash_info_for(root: Path, memory: MemoryMap, arch: Arch) -> CrashInfo:
    """`read_crash_info` with the "Kernel code" start of `memory` as a fallback."""
    code = [resource.range.start for resource, _ in memory.walk() if resource.name == "Kernel code"]
    return read_crash_info(root, arch, kernel_code_start=code[0] if code else None)


def read_firmware(root: Path) -> Firmware:
    """What the firmware gave the kernel of `root` (``/`` live, or a captured directory)."""
    return Firmware(read_device_tree(root), str(root / DEVICE_TREE))
