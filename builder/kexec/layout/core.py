"""What every architecture's crash layout is made of, and the kernel's rules for it.

A `Layout` is the argument list of `kexec_load`: an entry point, flags and
up to 16 segments, plus what the planner decided on the way (`details`).
A planner (one per architecture, see the registry in this package) turns
`LayoutInputs` into a `Layout`; `check_layout` applies the kernel's rules
before any syscall.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from builder.arch import Arch
from builder.errors import LayoutError
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.hotplug import CrashHotplug
from builder.kexec.layout.devicetree import BootSeeds
from builder.kexec.memmap import MemoryMap, Range
from builder.units import PAGE_SIZE, MiB

__all__ = [
    "ELF_MAGIC",
    "KEXEC_ON_CRASH",
    "KEXEC_SEGMENT_MAX",
    "DumpRange",
    "Firmware",
    "KexecSegment",
    "Layout",
    "LayoutDetails",
    "LayoutInputs",
    "LayoutOptions",
    "Planner",
    "check_layout",
    "check_rewritable_header",
    "corrupt_segment_for_testing",
    "describe_layout",
    "segments_for_digest",
]

KEXEC_ON_CRASH = 0x1  # include/uapi/linux/kexec.h
KEXEC_SEGMENT_MAX = 16


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
class DumpRange:
    """A RAM range the ELF core header describes; `offset`: where its bytes are read.

    The offset is the range's own address except for a range a backup copy moved.
    """

    start: int
    end: int  # exclusive
    offset: int

    def to_json(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end, "offset": self.offset}


@dataclass(frozen=True)
class LayoutDetails:
    """What a planner decided on the way; each architecture's planner extends it.

    `to_json` is the "details" object of layout.json.

    >>> LayoutDetails("console=ttyS0").to_json()
    {'cmdline': 'console=ttyS0'}
    """

    cmdline: str = ""  # the capture command line, as the layout passes it

    def to_json(self) -> dict[str, object]:
        return {"cmdline": self.cmdline}


@dataclass(frozen=True)
class Layout:
    """Everything `kexec_load` needs, plus what was decided on the way (`details`)."""

    arch: Arch
    entry: int
    flags: int
    crash_region: Range
    segments: tuple[KexecSegment, ...]
    details: LayoutDetails = field(default_factory=LayoutDetails)

    def segment(self, name: str) -> KexecSegment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise LayoutError(f"layout has no segment named {name!r}")


@dataclass(frozen=True)
class LayoutOptions:
    """Choices about the layout that are not facts of the inputs."""

    # Copy the low 640 KiB into the crash region before the jump (x86 kernels
    # before v5.5 reuse it); the ELF core header then reads it from the copy.
    backup: bool = False
    # Fresh kaslr-seed and rng-seed for a device tree (drawn at load time);
    # None leaves them out, so an offline layout is reproducible.
    seeds: BootSeeds | None = None
    # The kernel rewrites the ELF core header on CPU/memory hotplug
    # (kexec.hotplug); None: it does not, and the layout is as before.
    crash_hotplug: CrashHotplug | None = None


@dataclass(frozen=True)
class Firmware:
    """What the boot firmware gave the main kernel that a capture kernel needs again.

    The flattened device tree on arm64 and riscv64; x86 needs none (the
    ACPI RSDP comes with the crash info).
    """

    device_tree: bytes | None = field(default=None, repr=False)
    device_tree_source: str = "the booted device tree"  # its path, for messages


@dataclass(frozen=True)
class LayoutInputs:
    """What a crash layout is computed from, on every architecture."""

    kernel: bytes  # the kernel image file as the build wrote it
    initrd: bytes
    cmdline: str  # without elfcorehdr= and memory maps, which the layout adds
    memory: MemoryMap
    info: CrashInfo | None  # None: offline without captured sysfs values
    options: LayoutOptions = LayoutOptions()
    firmware: Firmware | None = None
    kernel_name: str = "vmlinuz"  # for messages


Planner = Callable[[LayoutInputs], Layout]


def check_layout(layout: Layout) -> None:
    """The kernel's rules for a crash load, checked before any syscall.

    At most 16 segments; mem and memsz page aligned; bufsz <= memsz; no two
    segments overlap; every segment and the entry inside the crash region.
    Each violation is a `LayoutError` naming the segment.

    >>> from builder.arch import host_arch
    >>> region = Range(0x1000000, 0x2000000)
    >>> kernel = KexecSegment("kernel", 0x1000800, 0x1000, b"")
    >>> check_layout(Layout(host_arch(), 0x1000000, 1, region, (kernel,)))
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
    for segment in segments:
        _check_segment(segment, layout.crash_region)
    ordered = sorted(segments, key=lambda segment: segment.mem)
    for lower, upper in itertools.pairwise(ordered):
        if lower.range.overlaps(upper.range):
            raise LayoutError(
                f"segment {upper.name!r} {upper.range} overlaps "
                f"segment {lower.name!r} {lower.range}"
            )
    if not layout.crash_region.contains_address(layout.entry):
        raise LayoutError(
            f"entry {layout.entry:#x} is not inside the crash region {layout.crash_region}"
        )
    if not any(segment.range.contains_address(layout.entry) for segment in segments):
        raise LayoutError(f"entry {layout.entry:#x} is not inside any segment")


def _check_segment(segment: KexecSegment, region: Range) -> None:
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


def describe_layout(layout: Layout) -> list[str]:
    """Human-readable lines: one per segment, in address order, then the entry.

    >>> from builder.arch import host_arch
    >>> segment = KexecSegment("kernel", 0x1000000, 0x1000, b"")
    >>> layout = Layout(host_arch(), 0x1000000, 1, Range(0x1000000, 0x2000000), (segment,))
    >>> print("\\n".join(describe_layout(layout)))  # doctest: +NORMALIZE_WHITESPACE
    crash region 0x000001000000-0x000001ffffff (16 MiB)
    segment                 mem      memsz      bufsz  sha256
    kernel       0x000001000000     0x1000        0x0  e3b0c44298fc1c14
    entry 0x1000000 flags 0x1
    """
    region = layout.crash_region
    lines = [
        f"crash region {region.start:#014x}-{region.last:#014x} ({region.size // MiB} MiB)",
        f"{'segment':<12} {'mem':>14} {'memsz':>10} {'bufsz':>10}  sha256",
    ]
    for segment in sorted(layout.segments, key=lambda item: item.mem):
        lines.append(
            f"{segment.name:<12} {segment.mem:#014x} {segment.memsz:#10x} "
            f"{segment.bufsz:#10x}  {segment.sha256[:16]}"
        )
    lines.append(f"entry {layout.entry:#x} flags {layout.flags:#x}")
    return lines


def segments_for_digest(
    segments: Sequence[KexecSegment], *, rewritten: str | None = None
) -> list[tuple[int, bytes, int]]:
    """Segments in the (start, data, memsz) form the purgatory's digest uses.

    `rewritten` names a segment the kernel may change after the load (the ELF
    core header under crash hotplug): it is left out, or the purgatory would
    refuse to start the capture kernel after the first rewrite.
    """
    return [(segment.mem, segment.data, segment.memsz) for segment in segments
            if segment.name != rewritten]  # fmt: skip


ELF_MAGIC = b"\x7fELF"


def check_rewritable_header(layout: Layout, name: str) -> None:
    """The kernel will find segment `name` as the ELF core header to rewrite.

    It takes the last segment whose first bytes are the ELF magic
    (kernel/crash_core.c, crash_handle_hotplug_event), so `name` must start
    with it and no segment after it may.

    >>> from builder.arch import host_arch
    >>> region = Range(0x1000000, 0x2000000)
    >>> header = KexecSegment("elfcorehdr", 0x1000000, 0x1000, ELF_MAGIC)
    >>> other = KexecSegment("purgatory", 0x1001000, 0x1000, ELF_MAGIC)
    >>> check_rewritable_header(Layout(host_arch(), 0x1001000, 1, region, (header, other)),
    ...                         "elfcorehdr")
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: segment 'purgatory' starts with the ELF magic after ...
    """
    found = [segment for segment in layout.segments if segment.data.startswith(ELF_MAGIC)]
    if not found or layout.segment(name) not in found:
        raise LayoutError(f"segment {name!r} does not start with the ELF magic")
    if found[-1].name != name:
        raise LayoutError(
            f"segment {found[-1].name!r} starts with the ELF magic after {name!r}: "
            "the kernel would rewrite it as the ELF core header"
        )


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
            # A segment loaded as zeros alone (backup) gets one byte that is not zero.
            data = bytearray(segment.data or b"\0")
            data[len(data) // 2] ^= 0xFF
            segments[index] = replace(segment, data=bytes(data))
            return replace(layout, segments=tuple(segments))
    raise LayoutError(f"layout has no segment named {name!r}")
