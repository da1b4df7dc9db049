"""The on-disk form of a layout: layout.json plus one blob per segment, beside the build.

layout.json (schema 1)::

    {
      "schema": 1,
      "arch": "x86_64",
      "entry": 1056256000,          # physical address kexec jumps to (purgatory)
      "flags": 4063233,             # kexec_load flags: KEXEC_ON_CRASH | arch << 16
      "crash_region": {"start": ..., "end": ..., "size": ...},   # end exclusive
      "segments": [
        {"name": "kernel", "mem": ..., "memsz": ..., "bufsz": ...,
         "sha256": "<hex of the bufsz bytes>", "blob": "segments/00-kernel.bin"},
        ...
      ],
      "details": {...}              # arch-specific: cmdline, e820, ELF core header
    }

Addresses and sizes are JSON integers; `blob` is relative to layout.json.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from builder.atomic import MARKER, LegacyOutput, replace_directory
from builder.errors import LayoutError
from builder.kexec.layout.core import KexecSegment, Layout
from builder.kexec.layout.inputs import (
    CMDLINE_FILE,
    INITRD_FILE,
    KERNEL_FILE,
    MANIFEST_FILE,
    read_manifest,
)

__all__ = ["LAYOUT_FILE", "SCHEMA", "SEGMENTS_DIR", "layout_json", "write_layout"]

LAYOUT_FILE = "layout.json"
SEGMENTS_DIR = "segments"
SCHEMA = 1
# What a layout brings; everything else in the output directory is the build's.
_LAYOUT_ENTRIES = frozenset({LAYOUT_FILE, SEGMENTS_DIR, MARKER})
# The segment blobs hold the kernel, the initrd (which may carry a secret) and
# addresses of this machine's memory: for root's eyes only.
SEGMENT_MODE = 0o600
SEGMENTS_DIR_MODE = 0o700


def _is_build_output(path: Path) -> bool:
    """A build output from before the marker: a manifest the way a build writes it."""
    try:
        found = read_manifest(path / MANIFEST_FILE)
    except LayoutError:
        return False
    return found is not None and {"recipe", "kernel", "initrd", "members"} <= set(found)


# An output from before the marker's inventory: a build's files, and an earlier layout's.
LEGACY_LAYOUT = LegacyOutput(
    names=frozenset(
        {
            KERNEL_FILE,
            INITRD_FILE,
            CMDLINE_FILE,
            MANIFEST_FILE,
            "fit.json",
            LAYOUT_FILE,
            SEGMENTS_DIR,
        }
    ),
    subdirs=frozenset({SEGMENTS_DIR}),
    recognise=_is_build_output,
)


def _blob_name(index: int, segment: KexecSegment) -> str:
    return f"{SEGMENTS_DIR}/{index:02d}-{segment.name}.bin"


def layout_json(layout: Layout) -> dict[str, object]:
    """The layout.json document (see the module docstring for the schema)."""
    return {
        "schema": SCHEMA,
        "arch": layout.arch.value,
        "entry": layout.entry,
        "flags": layout.flags,
        "crash_region": layout.crash_region.to_json(),
        "segments": [
            {
                "name": segment.name,
                "mem": segment.mem,
                "memsz": segment.memsz,
                "bufsz": segment.bufsz,
                "sha256": segment.sha256,
                "blob": _blob_name(index, segment),
            }
            for index, segment in enumerate(layout.segments)
        ],
        "details": layout.details.to_json(),
    }


def write_layout(layout: Layout, outdir: Path) -> Path:
    """Make `outdir` the build's files plus layout.json and segments/, in one atomic step.

    The new directory is staged beside the old one (the build's files hard
    linked, copied where linking fails) and swapped in whole, so `outdir`
    holds either the old build-and-layout or the new one, never a mix.
    """

    def fill(staging: Path) -> None:
        if outdir.is_dir():
            _carry_over_build(outdir, staging)
        (staging / SEGMENTS_DIR).mkdir(mode=SEGMENTS_DIR_MODE)
        os.chmod(staging / SEGMENTS_DIR, SEGMENTS_DIR_MODE)  # whatever the umask
        for index, segment in enumerate(layout.segments):
            blob = staging / _blob_name(index, segment)
            descriptor = os.open(blob, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SEGMENT_MODE)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(segment.data)
        text = json.dumps(layout_json(layout), indent=2) + "\n"
        (staging / LAYOUT_FILE).write_text(text)

    replace_directory(outdir, fill, legacy=LEGACY_LAYOUT)
    return outdir / LAYOUT_FILE


def _carry_over_build(outdir: Path, staging: Path) -> None:
    """Put every entry of `outdir` but an earlier layout into `staging`."""
    for entry in sorted(outdir.iterdir()):
        if entry.name in _LAYOUT_ENTRIES:
            continue
        target = staging / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link `source` as `target`; copy it where the filesystem cannot link."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        # Linking can fail for reasons of the filesystem (no hard links, a link
        # count limit, protected_hardlinks); a copy then does the same job.
        shutil.copy2(source, target)
