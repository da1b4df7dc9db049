"""A build's output directory: initrd.img, vmlinuz, cmdline.txt, manifest.json, fit.json,
kdump-load.plan.

`write_outputs` writes them through builder.atomic.replace_directory: the
finished directory is swapped in whole, so a failed build leaves the previous
output as it was, and a directory kdump-build did not write is never replaced.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.arch import parse_arch
from builder.atomic import MARKER, MARKER_TEXT, LegacyOutput, replace_directory
from builder.image.initrd import initrd_mode, sha256
from builder.image.makedumpfile import dotted
from builder.image.pipeline import BuildResult, package_cache
from builder.kexec.plan import PLAN_FILE, plan_text
from builder.kexec.purgatory.record import purgatory_records

__all__ = ["LEGACY_OUTPUT", "holds_exactly", "manifest", "output_files", "write_outputs"]

DIRECTORY_MODE = 0o755


def _has_build_manifest(path: Path) -> bool:
    """An output from before the marker: our manifest (its names are checked by atomic)."""
    try:
        found = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and {"recipe", "kernel", "initrd", "members"} <= set(found)


# A build's output from before the marker's inventory: the build's files, and the ones
# `kdump-build layout` adds to a build's output (segments/ holds only regular files).
LEGACY_OUTPUT = LegacyOutput(
    names=frozenset(
        {
            "initrd.img",
            "vmlinuz",
            "cmdline.txt",
            "manifest.json",
            "fit.json",
            "layout.json",
            "segments",
        }
    ),
    subdirs=frozenset({"segments"}),
    recognise=_has_build_manifest,
)


def manifest(result: BuildResult) -> dict[str, Any]:
    """manifest.json: the inputs and every initrd member."""
    recipe = result.recipe
    return {
        "recipe": recipe.name,
        "arch": recipe.target.arch,
        "kernel": {
            "version": result.kernel_version,
            "sha256": sha256(result.kernel_bytes),
            "size": len(result.kernel_bytes),
        },
        "cmdline": result.cmdline,
        "kexec": {"backup_region": recipe.kernel.backup_region},
        "initrd": {
            "sha256": sha256(result.initrd),
            "size": len(result.initrd),
            "compression": recipe.initrd.compression,
            "missing_firmware": list(result.missing_firmware),
        },
        "collector": _collector(result),
        "packages": [
            {
                "name": package.name,
                "version": package.version,
                "file": package.path.name,
                "sha256": package_cache().package_sha256(package.path),
                "requested": package.requested,
                # Why a package the recipe did not name is here: a library of that one.
                **({"library_of": package.library_of} if package.library_of else {}),
            }
            for package in result.packages
        ],
        "members": [
            {
                "path": member.path,
                "type": member.kind.value,
                "mode": f"{member.mode:04o}",
                "size": len(member.data),
                "sha256": sha256(member.data),
                **({"target": member.target} if member.target else {}),
                "origin": member.origin or "kdump-build",
            }
            for member in result.members
        ],
    }


def output_files(result: BuildResult) -> dict[str, tuple[bytes, int]]:
    """Every file of the output directory: its bytes and its mode (fixed, whatever the umask:
    the outputs are part of what is reproduced)."""
    files = {
        # As private as its most private member: whoever reads the initrd reads them all.
        "initrd.img": (result.initrd, initrd_mode(result.members, secret=result.holds_secrets)),
        "vmlinuz": (result.kernel_bytes, 0o644),
        "cmdline.txt": ((result.cmdline + "\n").encode(), 0o644),
        "manifest.json": ((json.dumps(manifest(result), indent=2) + "\n").encode(), 0o644),
    }
    plan = _kdump_load_plan(result)
    if plan is not None:
        files[PLAN_FILE] = (plan, 0o644)
    if result.fit is not None:
        files["fit.json"] = ((json.dumps(result.fit.to_json(), indent=2) + "\n").encode(), 0o644)
    return files


def _kdump_load_plan(result: BuildResult) -> bytes | None:
    """kdump-load.plan (builder/kexec/plan/): None for an architecture with no purgatory."""
    arch = parse_arch(result.recipe.target.arch, "target.arch")
    if arch not in purgatory_records():
        return None
    files = (
        ("kernel", "vmlinuz", result.kernel_bytes),
        ("initrd", "initrd.img", result.initrd),
        ("cmdline", "cmdline.txt", (result.cmdline + "\n").encode()),
    )
    return plan_text(arch, files, backup=result.recipe.kernel.backup_region)


def holds_exactly(outdir: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    """Whether `outdir` is our output and holds these files, byte for byte, and nothing else.

    Such a directory was made durable when it was swapped in, so a build that
    would write the same bytes has nothing to do (no staging, no fsync).
    """
    try:
        if outdir.is_symlink() or (outdir.stat().st_mode & 0o7777) != DIRECTORY_MODE:
            return False
        names = {entry.name for entry in outdir.iterdir()}
        # The marker's first line is fixed (what follows it, if anything, is the run's own).
        marker = outdir / MARKER
        if names != {*files, MARKER} or not marker.read_bytes().startswith(MARKER_TEXT):
            return False
        for name, (data, mode) in files.items():
            path = outdir / name
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o7777 != mode:
                return False
            if info.st_size != len(data) or path.read_bytes() != data:
                return False
    except OSError:
        return False
    return True


def write_outputs(
    result: BuildResult, outdir: Path, extra: Mapping[str, bytes] | None = None
) -> bool:
    """Make `outdir` hold exactly this build's outputs, in one atomic step (or refuse).

    `extra` adds files by name (what a caller records beside the build, such as
    what it was built from), swapped in with the rest. Returns False when the
    directory already held exactly these files (an unchanged rebuild writes nothing).
    """
    files = output_files(result)
    files.update({name: (data, 0o644) for name, data in (extra or {}).items()})
    if holds_exactly(outdir, files):
        return False

    def fill(staging: Path) -> None:
        for name, (data, mode) in files.items():
            (staging / name).write_bytes(data)
            os.chmod(staging / name, mode)

    replace_directory(outdir, fill, mode=DIRECTORY_MODE, legacy=LEGACY_OUTPUT)
    return True


def _collector(result: BuildResult) -> dict[str, Any] | None:
    """The initrd's makedumpfile and the newest kernel it supports, for `dumps` and readers."""
    check = result.collector
    if check is None:
        return None
    return {
        "makedumpfile": dotted(check.makedumpfile),
        "latest_kernel": dotted(check.latest_kernel) if check.latest_kernel else None,
        "kernel": check.kernel_release,
        "supported": not check.too_old,
    }
