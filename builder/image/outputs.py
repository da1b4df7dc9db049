"""A build's output directory: initrd.img, vmlinuz, cmdline.txt, manifest.json, fit.json.

`write_outputs` writes them through builder.atomic.replace_directory: the
finished directory is swapped in whole, so a failed build leaves the previous
output as it was, and a directory kdump-build did not write is never replaced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.atomic import replace_directory
from builder.image.initrd import sha256
from builder.image.pipeline import BuildResult, package_cache

__all__ = ["manifest", "write_outputs"]


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
        "packages": [
            {
                "name": package.name,
                "version": package.version,
                "file": package.path.name,
                "sha256": package_cache().package_sha256(package.path),
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


def write_outputs(
    result: BuildResult, outdir: Path, extra: Mapping[str, bytes] | None = None
) -> None:
    """Make `outdir` hold exactly this build's outputs, in one atomic step (or refuse).

    `extra` adds files by name (what a caller records beside the build, such as
    what it was built from), swapped in with the rest.
    """

    def fill(staging: Path) -> None:
        for name, data in (extra or {}).items():
            (staging / name).write_bytes(data)
        (staging / "initrd.img").write_bytes(result.initrd)
        (staging / "vmlinuz").write_bytes(result.kernel_bytes)
        (staging / "cmdline.txt").write_text(result.cmdline + "\n")
        text = json.dumps(manifest(result), indent=2, sort_keys=False) + "\n"
        (staging / "manifest.json").write_text(text)
        if result.fit is not None:
            report = json.dumps(result.fit.to_json(), indent=2) + "\n"
            (staging / "fit.json").write_text(report)
        # Fixed modes, whatever the umask: the outputs are part of what is reproduced.
        for path in staging.iterdir():
            os.chmod(path, 0o644)
        if result.holds_secrets:
            os.chmod(staging / "initrd.img", 0o600)

    replace_directory(outdir, fill)
