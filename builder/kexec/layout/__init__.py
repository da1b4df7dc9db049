"""kexec segment layouts: what bytes go where in the crash region, as data.

A `Layout` is the argument list of `kexec_load`: an entry point, flags and
up to 16 segments. Planning is per architecture (`ARCHES`); the checks and
the on-disk form (layout.json plus one blob per segment) are shared.

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

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import LayoutError
from builder.kexec.memmap import PAGE_SIZE, Range

__all__ = [
    "KEXEC_ARCH_AARCH64",
    "KEXEC_ARCH_X86_64",
    "KEXEC_ON_CRASH",
    "KEXEC_SEGMENT_MAX",
    "LAYOUT_FILE",
    "KexecSegment",
    "Layout",
    "check_layout",
    "layout_json",
    "write_layout",
]

KEXEC_ON_CRASH = 0x1
KEXEC_ARCH_X86_64 = 62 << 16
KEXEC_ARCH_AARCH64 = 183 << 16
KEXEC_SEGMENT_MAX = 16
LAYOUT_FILE = "layout.json"
SEGMENTS_DIR = "segments"
SCHEMA = 1


@dataclass(frozen=True)
class KexecSegment:
    """One `struct kexec_segment`: `data` is copied to `mem`, zeros up to `memsz`."""

    name: str
    mem: int
    memsz: int
    data: bytes = field(repr=False)

    @property
    def bufsz(self) -> int:
        return len(self.data)

    @property
    def range(self) -> Range:
        return Range(self.mem, self.mem + self.memsz)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Layout:
    """Everything `kexec_load` needs, plus what was decided on the way (`details`)."""

    arch: str
    entry: int
    flags: int
    crash_region: Range
    segments: tuple[KexecSegment, ...]
    details: Mapping[str, object] = field(default_factory=dict)

    def segment(self, name: str) -> KexecSegment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise LayoutError(f"layout has no segment named {name!r}")


def check_layout(layout: Layout) -> None:
    """The kernel's rules for a crash load, checked before any syscall.

    At most 16 segments; mem and memsz page aligned; bufsz <= memsz; no two
    segments overlap; every segment and the entry inside the crash region.
    Each violation is a `LayoutError` naming the segment.

    >>> from builder.kexec.memmap import Range
    >>> region = Range(0x1000000, 0x2000000)
    >>> kernel = KexecSegment("kernel", 0x1000800, 0x1000, b"")
    >>> bad = Layout("x86_64", 0x1000000, 1, region, (kernel,))
    >>> check_layout(bad)
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: segment 'kernel': mem 0x1000800 is not page aligned
    """
    segments = layout.segments
    if len(segments) > KEXEC_SEGMENT_MAX:
        names = ", ".join(segment.name for segment in segments)
        raise LayoutError(
            f"{len(segments)} segments ({names}); kexec_load takes at most {KEXEC_SEGMENT_MAX}"
        )
    region = layout.crash_region
    for segment in segments:
        where = f"segment {segment.name!r}"
        if segment.mem % PAGE_SIZE:
            raise LayoutError(f"{where}: mem {segment.mem:#x} is not page aligned")
        if segment.memsz <= 0 or segment.memsz % PAGE_SIZE:
            raise LayoutError(f"{where}: memsz {segment.memsz:#x} is not a positive page multiple")
        if segment.bufsz > segment.memsz:
            raise LayoutError(
                f"{where}: bufsz {segment.bufsz:#x} is larger than memsz {segment.memsz:#x}"
            )
        if not region.contains(segment.range):
            raise LayoutError(f"{where}: {segment.range} is not inside the crash region {region}")
    ordered = sorted(segments, key=lambda segment: segment.mem)
    for lower, upper in itertools.pairwise(ordered):
        if lower.range.overlaps(upper.range):
            raise LayoutError(
                f"segment {upper.name!r} {upper.range} overlaps "
                f"segment {lower.name!r} {lower.range}"
            )
    if not region.contains_address(layout.entry):
        raise LayoutError(f"entry {layout.entry:#x} is not inside the crash region {region}")
    if not any(segment.range.contains_address(layout.entry) for segment in segments):
        raise LayoutError(f"entry {layout.entry:#x} is not inside any segment")


def _blob_name(index: int, segment: KexecSegment) -> str:
    return f"{SEGMENTS_DIR}/{index:02d}-{segment.name}.bin"


def layout_json(layout: Layout) -> dict[str, object]:
    """The layout.json document (see the module docstring for the schema)."""
    return {
        "schema": SCHEMA,
        "arch": layout.arch,
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
        "details": dict(layout.details),
    }


def write_layout(layout: Layout, outdir: Path) -> Path:
    """Write layout.json and segments/ into `outdir`, replacing earlier ones whole.

    Everything is written to a staging directory first, so an error leaves
    the previous layout (or none) in place, never a mix.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".layout.", dir=outdir))
    try:
        (staging / SEGMENTS_DIR).mkdir()
        for index, segment in enumerate(layout.segments):
            (staging / _blob_name(index, segment)).write_bytes(segment.data)
        text = json.dumps(layout_json(layout), indent=2) + "\n"
        (staging / LAYOUT_FILE).write_text(text)
        old = outdir / SEGMENTS_DIR
        retired = staging / "retired"
        if old.exists():
            os.rename(old, retired)
        os.rename(staging / SEGMENTS_DIR, old)
        os.replace(staging / LAYOUT_FILE, outdir / LAYOUT_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outdir / LAYOUT_FILE


def describe_layout(layout: Layout) -> list[str]:
    """Human-readable lines: one per segment, in address order, then the entry."""
    lines = [
        f"crash region {layout.crash_region.start:#014x}-{layout.crash_region.last:#014x} "
        f"({layout.crash_region.size // 2**20} MiB)",
        f"{'segment':<12} {'mem':>14} {'memsz':>10} {'bufsz':>10}  sha256",
    ]
    for segment in sorted(layout.segments, key=lambda item: item.mem):
        lines.append(
            f"{segment.name:<12} {segment.mem:#014x} {segment.memsz:#10x} "
            f"{segment.bufsz:#10x}  {segment.sha256[:16]}"
        )
    lines.append(f"entry {layout.entry:#x} flags {layout.flags:#x}")
    return lines


def segments_for_digest(segments: Sequence[KexecSegment]) -> list[tuple[int, bytes, int]]:
    """Segments in the (start, data, memsz) form the purgatory's digest uses."""
    return [(segment.mem, segment.data, segment.memsz) for segment in segments]


def corrupt_segment_for_testing(layout: Layout, name: str) -> Layout:
    """TEST-ONLY: flip one byte of segment `name` after the purgatory digest was computed.

    Exists so a VM test can show that the purgatory refuses to start a
    capture kernel whose segments changed after planning. Never used by a
    normal command; the CLI reaches it only through a hidden option named
    `--testing-corrupt-segment`.
    """
    segments = list(layout.segments)
    for index, segment in enumerate(segments):
        if segment.name == name:
            if not segment.data:
                raise LayoutError(f"segment {name!r} has no bytes to corrupt")
            data = bytearray(segment.data)
            middle = len(data) // 2
            data[middle] ^= 0xFF
            segments[index] = KexecSegment(segment.name, segment.mem, segment.memsz, bytes(data))
            return Layout(layout.arch, layout.entry, layout.flags, layout.crash_region,
                          tuple(segments), layout.details)  # fmt: skip
    raise LayoutError(f"layout has no segment named {name!r}")
