"""`crashkernel=`: parse it, predict the reservation, estimate the capture's needs, judge the fit.

Parsing and reservation follow the kernel's rules (kernel/crash_reserve.c,
lib/cmdline.c memparse, Documentation/admin-guide/kernel-parameters.txt), with
one deliberate difference: where the kernel silently ignores trailing garbage
or unchecked entries, we refuse the value, since a recipe with a typo should
fail at build time, not reserve something unexpected at boot.

The memory estimate is a sum of named terms whose constants live in
`Calibration`; its defaults are placeholders until the QEMU calibration runs
in bench/ replace them.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from builder.errors import FitError, LayoutError, RecipeError, SourceError
from builder.kexec.memmap import Range, parse_iomem

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

# parse_crashkernel_mem() rounds system RAM up to this before matching ranges,
# because firmware hides a little RAM and "4G" machines report slightly less.
RAM_ROUNDING = 128 * MiB

# RAM sizes a fit judges when neither the recipe (crashkernel.ram) nor the
# command line names any: a small guest, a typical server's lower end, and the
# top of kdump-utils' 256M range. Deliberately not the build host's RAM: the
# output must not depend on where it is built, and the host is often not the
# machine that will crash.
DEFAULT_RAM = ("1G", "4G", "64G")

# kernel/dma/swiotlb.c IO_TLB_DEFAULT_SIZE: the swiotlb size without swiotlb=.
SWIOTLB_DEFAULT_SIZE = 64 * MiB

_U64_LIMIT = 1 << 64
_SUFFIX_SHIFTS = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_DIGITS = {
    8: frozenset("01234567"),
    10: frozenset("0123456789"),
    16: frozenset("0123456789abcdefABCDEF"),
}


# --------------------------------------------------------------------------- errors


class CrashkernelSyntaxError(RecipeError):
    """A malformed `crashkernel=` value; ``position`` is the 0-based index of the bad character."""

    def __init__(self, value: str, position: int, reason: str, where: str) -> None:
        self.value = value
        self.position = position
        self.reason = reason
        at = repr(value[position]) if position < len(value) else "end of value"
        super().__init__(f"{where}={value!r}: {reason} at index {position} ({at})")


# --------------------------------------------------------------------------- sizes


def _memparse(text: str, pos: int) -> tuple[int, int]:
    """The kernel's memparse(): number (C base rules) plus optional K/M/G/T/P/E suffix.

    Returns (value, end); end == pos means no number was there. Like
    simple_strtoull with base 0, "0x" + hex digit is hex, a leading 0 is octal
    ("010M" is 8 MiB), so "08" stops after the "0".
    """
    n = len(text)
    i = pos
    if i < n and text[i] == "0":
        if i + 2 < n and text[i + 1] in "xX" and text[i + 2] in _DIGITS[16]:
            base, i = 16, i + 2
        else:
            base = 8
    else:
        base = 10
    digits = _DIGITS[base]
    value = 0
    start = i
    while i < n and text[i] in digits:
        value = value * base + int(text[i], 16)
        i += 1
    if i == start:
        return 0, pos
    shift = _SUFFIX_SHIFTS.get(text[i].lower()) if i < n else None
    if shift is not None:
        value <<= shift
        i += 1
    return value, i


def _size_at(value: str, pos: int, where: str, what: str = "a size") -> tuple[int, int]:
    number, end = _memparse(value, pos)
    if end == pos:
        raise CrashkernelSyntaxError(value, pos, f"expected {what}", where)
    if number >= _U64_LIMIT:
        # The kernel would wrap around silently; nobody means that.
        raise CrashkernelSyntaxError(value, pos, "size does not fit in 64 bits", where)
    return number, end


def parse_size(text: str, *, where: str = "size") -> int:
    """Parse a size with memparse rules (``4G``, ``192M``, ``0x1000``) into bytes.

    >>> parse_size("4G"), parse_size("192m"), parse_size("0x10M")
    (4294967296, 201326592, 16777216)
    """
    number, end = _size_at(text, 0, where)
    if end != len(text):
        raise CrashkernelSyntaxError(text, end, "unexpected character after the size", where)
    return number


def format_size(size: int) -> str:
    """The shortest exact memparse spelling of ``size`` (largest unit that divides it).

    >>> format_size(192 * MiB), format_size(4 * GiB), format_size(4224 * MiB), format_size(1000)
    ('192M', '4G', '4224M', '1000')
    """
    for unit, suffix in ((TiB, "T"), (GiB, "G"), (MiB, "M"), (KiB, "K")):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def _roundup(value: int, step: int) -> int:
    return -(-value // step) * step


# --------------------------------------------------------------------------- parsed forms


class Suffix(enum.StrEnum):
    HIGH = "high"
    LOW = "low"
    CMA = "cma"


@dataclass(frozen=True)
class SimpleSpec:
    """``size[@offset]``. An offset of 0 means "anywhere", as in the kernel."""

    text: str
    size: int
    offset: int | None = None


@dataclass(frozen=True)
class RangeEntry:
    """``start-[end]:size``; ``end`` None means unbounded. End is exclusive."""

    start: int
    end: int | None
    size: int

    def matches(self, total_mem: int) -> bool:
        """Does RAM (already rounded up to 128 MiB) fall in this range?"""
        return self.start <= total_mem and (self.end is None or total_mem < self.end)

    def __str__(self) -> str:
        end = "" if self.end is None else format_size(self.end)
        return f"{format_size(self.start)}-{end}:{format_size(self.size)}"


@dataclass(frozen=True)
class RangesSpec:
    """``start-[end]:size[,...][@offset]``: the size depends on system RAM."""

    text: str
    entries: tuple[RangeEntry, ...]
    offset: int | None = None


@dataclass(frozen=True)
class SuffixSpec:
    """``size,high``, ``size,low`` or ``size,cma``."""

    text: str
    size: int
    suffix: Suffix


CrashkernelSpec = SimpleSpec | RangesSpec | SuffixSpec


@dataclass(frozen=True)
class CrashkernelConfig:
    """All `crashkernel=` values of one command line, selected as the kernel does.

    The kernel uses the last plain value; only without one does it look at
    the last ``,high`` (and then ``,low``); ``,cma`` is an addition to either.
    """

    main: SimpleSpec | RangesSpec | None = None
    high: SuffixSpec | None = None
    low: SuffixSpec | None = None
    cma: SuffixSpec | None = None

    def __str__(self) -> str:
        values = [spec.text for spec in (self.main, self.high, self.low, self.cma) if spec]
        return " ".join(f"crashkernel={value}" for value in values)


def parse_crashkernel(value: str, *, where: str = "crashkernel") -> CrashkernelSpec:
    """Parse one `crashkernel=` value (a leading ``crashkernel=`` is allowed).

    Raises `CrashkernelSyntaxError` (a `RecipeError`) naming the index of the
    first bad character.

    >>> parse_crashkernel("256M@16M")
    SimpleSpec(text='256M@16M', size=268435456, offset=16777216)
    >>> parse_crashkernel("512M-2G:64M,2G-:128M").entries[1]
    RangeEntry(start=2147483648, end=None, size=134217728)
    >>> parse_crashkernel("1G,high").suffix
    <Suffix.HIGH: 'high'>
    """
    if not isinstance(value, str):
        raise RecipeError(f"{where}: expected a string, got {type(value).__name__}")
    text = value.removeprefix("crashkernel=")
    # Errors quote the value without the prefix; positions index into it.
    for suffix in Suffix:
        # The kernel classifies by the trailing ",high"/",low"/",cma" before parsing.
        marker = f",{suffix.value}"
        if text.endswith(marker):
            size, end = _size_at(text, 0, where)
            if end != len(text) - len(marker):
                raise CrashkernelSyntaxError(text, end, f"expected '{marker}'", where)
            return SuffixSpec(text, size, suffix)
    if ":" in text:
        return _parse_ranges(text, where)
    size, end = _size_at(text, 0, where)
    offset = None
    if end < len(text):
        if text[end] != "@":
            raise CrashkernelSyntaxError(text, end, "expected '@offset' or the end", where)
        offset, end = _size_at(text, end + 1, where, "an offset after '@'")
        if end != len(text):
            raise CrashkernelSyntaxError(text, end, "unexpected character after the offset", where)
    return SimpleSpec(text, size, offset or None)


def _parse_ranges(text: str, where: str) -> RangesSpec:
    entries: list[RangeEntry] = []
    pos = 0
    offset = None
    while True:
        start, pos = _size_at(text, pos, where, "a range start")
        if pos >= len(text) or text[pos] != "-":
            raise CrashkernelSyntaxError(text, pos, "expected '-'", where)
        pos += 1
        end = None
        if pos < len(text) and text[pos] != ":":
            end_at = pos
            end, pos = _size_at(text, pos, where, "a range end or ':'")
            if end <= start:
                raise CrashkernelSyntaxError(
                    text, end_at, "range end must be above its start", where
                )
        if pos >= len(text) or text[pos] != ":":
            raise CrashkernelSyntaxError(text, pos, "expected ':'", where)
        size, pos = _size_at(text, pos + 1, where)
        entries.append(RangeEntry(start, end, size))
        if pos == len(text):
            break
        if text[pos] == ",":
            pos += 1
            continue
        if text[pos] == "@":
            offset, pos = _size_at(text, pos + 1, where, "an offset after '@'")
            if pos != len(text):
                raise CrashkernelSyntaxError(
                    text, pos, "unexpected character after the offset", where
                )
            break
        raise CrashkernelSyntaxError(text, pos, "expected ',', '@offset' or the end", where)
    return RangesSpec(text, tuple(entries), offset or None)


def parse_crashkernel_args(text: str, *, where: str = "crashkernel") -> CrashkernelConfig:
    """Parse one or more `crashkernel=` values into a `CrashkernelConfig`.

    ``text`` is either a kernel command line (only ``crashkernel=`` words
    count) or whitespace-separated bare values.

    >>> config = parse_crashkernel_args("quiet crashkernel=512M,high crashkernel=128M,low")
    >>> config.high.size // MiB, config.low.size // MiB, config.main
    (512, 128, None)
    """
    words = text.split()
    if any(word.startswith("crashkernel=") for word in words):
        words = [word for word in words if word.startswith("crashkernel=")]
    if not words:
        raise RecipeError(f"{where}: no crashkernel= value in {text!r}")
    main: SimpleSpec | RangesSpec | None = None
    by_suffix: dict[Suffix, SuffixSpec] = {}
    for word in words:
        spec = parse_crashkernel(word, where=where)
        if isinstance(spec, SuffixSpec):
            by_suffix[spec.suffix] = spec  # the last one wins, as in get_last_crashkernel()
        else:
            main = spec
    return CrashkernelConfig(
        main, by_suffix.get(Suffix.HIGH), by_suffix.get(Suffix.LOW), by_suffix.get(Suffix.CMA)
    )


def _as_config(spec: str | CrashkernelSpec | CrashkernelConfig) -> CrashkernelConfig:
    if isinstance(spec, CrashkernelConfig):
        return spec
    if isinstance(spec, str):
        return parse_crashkernel_args(spec)
    if isinstance(spec, SuffixSpec):
        return CrashkernelConfig(
            high=spec if spec.suffix is Suffix.HIGH else None,
            low=spec if spec.suffix is Suffix.LOW else None,
            cma=spec if spec.suffix is Suffix.CMA else None,
        )
    return CrashkernelConfig(main=spec)


# --------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class ArchCrash:
    """Per-architecture reservation constants (arch/*/include/asm/crash_reserve.h)."""

    name: str
    crash_align: int  # CRASH_ALIGN: alignment of the reservation's base
    low_max: int  # CRASH_ADDR_LOW_MAX: where "low" memory ends
    high_max: int  # CRASH_ADDR_HIGH_MAX
    fixed_default_low: int | None  # DEFAULT_CRASH_KERNEL_LOW_SIZE when not swiotlb-based
    # How much RAM we assume sits below low_max when the caller does not say:
    # a QEMU q35 guest with more than 2.75 GiB keeps 2 GiB below 4 GiB.
    assumed_low_ram: int = 2 * GiB

    def default_low(self, swiotlb_bytes: int = SWIOTLB_DEFAULT_SIZE) -> int:
        """The low reservation added when the main one lands above low_max."""
        if self.fixed_default_low is not None:
            return self.fixed_default_low
        # x86_64 crash_low_size_default(): swiotlb plus 8 MiB for other DMA, at least 256 MiB.
        return max(swiotlb_bytes + 8 * MiB, 256 * MiB)


ARCHES: dict[str, ArchCrash] = {
    "x86_64": ArchCrash("x86_64", 16 * MiB, 4 * GiB, 64 * TiB, None),
    # arm64: CRASH_ALIGN 2 MiB; CRASH_ADDR_LOW_MAX is arm64_dma_phys_limit (at most
    # 4 GiB on the usual platforms); the generic default low size is 128 MiB.
    "arm64": ArchCrash("arm64", 2 * MiB, 4 * GiB, 1 << 48, 128 * MiB),
}
_ARCH_ALIASES = {"amd64": "x86_64", "aarch64": "arm64"}


def arch_crash(arch: str) -> ArchCrash:
    """The reservation constants of ``arch`` (``x86_64``/``amd64``, ``arm64``/``aarch64``)."""
    name = _ARCH_ALIASES.get(arch, arch)
    if name not in ARCHES:
        raise RecipeError(f"arch: {arch!r} is not one of {', '.join(sorted(ARCHES))}")
    return ARCHES[name]


# --------------------------------------------------------------------------- reservation


class Placement(enum.StrEnum):
    NONE = "none"  # nothing reserved
    LOW = "low"  # below CRASH_ADDR_LOW_MAX
    HIGH = "high"  # above it, with an extra low range
    FIXED = "fixed"  # at the @offset


@dataclass(frozen=True)
class Reservation:
    """What the kernel reserves for a given RAM size.

    ``size`` is the main crash region (0 when nothing is reserved); ``low`` the
    extra range below 4 GiB; ``cma`` the `,cma` range, which the capture kernel
    may use for user memory but never for its kernel and initrd.
    """

    ram: int
    arch: str
    size: int
    alignment: int
    offset: int | None
    placement: Placement
    low: int = 0
    cma: int = 0
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Bytes taken from the running system (main + low + cma)."""
        return self.size + self.low + self.cma

    def to_json(self) -> dict[str, object]:
        return {
            "ram": self.ram,
            "arch": self.arch,
            "reserved": self.size,
            "alignment": self.alignment,
            "offset": self.offset,
            "placement": self.placement.value,
            "low": self.low,
            "cma": self.cma,
            "notes": list(self.notes),
        }


def _main_size(main: SimpleSpec | RangesSpec, ram: int, notes: list[str]) -> tuple[int, int | None]:
    if isinstance(main, SimpleSpec):
        return main.size, main.offset
    total_mem = _roundup(ram, RAM_ROUNDING)
    for index, entry in enumerate(main.entries):
        # parse_crashkernel_mem() checks every entry it walks through, matched or not.
        if entry.size >= total_mem:
            notes.append(
                f"entry {index} ({entry}) asks for at least the rounded RAM "
                f"{format_size(total_mem)}: the kernel rejects the whole value"
            )
            return 0, None
        if entry.matches(total_mem):
            return entry.size, main.offset
    notes.append(f"no range matches RAM rounded up to {format_size(total_mem)}")
    return 0, None


def reservation(
    spec: str | CrashkernelSpec | CrashkernelConfig,
    ram_bytes: int,
    arch: str = "x86_64",
    *,
    low_ram: int | None = None,
    swiotlb_bytes: int = SWIOTLB_DEFAULT_SIZE,
) -> Reservation:
    """Predict the reservation for a machine with ``ram_bytes`` of system RAM.

    ``low_ram`` is the RAM below 4 GiB; it only decides whether the main
    region lands above 4 GiB (then x86 adds a low range). Default: RAM up to 2
    GiB (a q35 guest's split), see `ArchCrash.assumed_low_ram`.

    >>> r = reservation("512M-2G:64M,2G-:128M", 4 * GiB)
    >>> r.size // MiB, r.alignment // MiB, r.offset, r.low
    (128, 16, None, 0)
    >>> r = reservation("crashkernel=512M,high", 16 * GiB)
    >>> r.placement.value, r.low // MiB
    ('high', 256)
    """
    params = arch_crash(arch)
    if ram_bytes <= 0:
        raise RecipeError(f"RAM size must be positive, got {ram_bytes}")
    config = _as_config(spec)
    below_4g = min(ram_bytes, params.assumed_low_ram if low_ram is None else low_ram)
    above_4g = ram_bytes - below_4g
    notes: list[str] = []

    def nothing(reason: str) -> Reservation:
        if reason:
            notes.append(reason)
        return Reservation(
            ram_bytes, params.name, 0, params.crash_align, None, Placement.NONE, notes=tuple(notes)
        )

    high = False
    low_size = 0
    if config.main is not None:
        if config.high or config.low:
            notes.append("',high'/',low' are ignored when a plain crashkernel= is present")
        size, offset = _main_size(config.main, ram_bytes, notes)
    elif config.high is not None:
        size, offset, high = config.high.size, None, True
        low_size = config.low.size if config.low else params.default_low(swiotlb_bytes)
    else:
        return nothing("no plain or ',high' crashkernel= value: the kernel reserves nothing")

    if size == 0:
        # A range miss already said why; a literal 0 has not.
        return nothing("" if notes else "crashkernel size is 0: nothing reserved")
    if size >= ram_bytes:
        return nothing(f"size {format_size(size)} is not below system RAM: the kernel refuses it")

    if offset is not None:
        # reserve_crashkernel_generic() asks memblock for an aligned block inside
        # [offset, offset + size): an unaligned offset can never be satisfied.
        if offset % params.crash_align:
            return nothing(
                f"offset {offset:#x} is not a multiple of {format_size(params.crash_align)} "
                "(CRASH_ALIGN): current kernels refuse it (x86 before the generic code "
                "accepted 1M alignment)"
            )
        if offset >= params.low_max:
            notes.append("a fixed offset above 4G gets no extra low range in the generic code")
        placement, low = Placement.FIXED, 0
    elif high:
        if above_4g >= size:
            placement, low = Placement.HIGH, low_size
        elif size < below_4g:
            notes.append("no RAM above 4G for ',high': falls back below 4G without a low range")
            placement, low = Placement.LOW, 0
        else:
            return nothing(f"no room for {format_size(size)} above or below 4G")
    elif size < below_4g:
        placement, low = Placement.LOW, 0
    elif above_4g >= size:
        # The fallback to high memory always uses the default low size.
        notes.append("does not fit below 4G: falls back above 4G with the default low range")
        placement, low = Placement.HIGH, params.default_low(swiotlb_bytes)
    else:
        return nothing(f"no room for {format_size(size)} above or below 4G")

    cma = config.cma.size if config.cma else 0
    return Reservation(
        ram_bytes,
        params.name,
        size,
        params.crash_align,
        offset,
        placement,
        low=low,
        cma=cma,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- live system


@dataclass(frozen=True)
class LiveReservation:
    """The reservation of a running system.

    ``main`` and ``low`` come from `/proc/iomem` (None when absent or hidden);
    ``sysfs_size`` from `/sys/kernel/kexec_crash_size` (the main region, which
    can be shrunk at run time by writing a smaller value).
    """

    main: Range | None
    low: Range | None
    sysfs_size: int | None

    @property
    def size(self) -> int:
        """Bytes of the main region: sysfs when known, else the iomem range, else 0."""
        if self.sysfs_size is not None:
            return self.sysfs_size
        return self.main.size if self.main else 0

    def to_json(self) -> dict[str, object]:
        return {
            "reserved": self.size,
            "main": self.main.to_json() if self.main else None,
            "low": self.low.to_json() if self.low else None,
            "sysfs_size": self.sysfs_size,
        }


def live_reservation(iomem_text: str | None, crash_size_text: str | None = None) -> LiveReservation:
    """Read the reservation from `/proc/iomem` text and `kexec_crash_size` text.

    Either may be None (not available). Zeroed iomem addresses (read as
    non-root) leave ``main``/``low`` unknown rather than wrong.

    >>> live = live_reservation("00100000-3ffdefff : System RAM\\n"
    ...                         "  33000000-3effffff : Crash kernel\\n", "201326592\\n")
    >>> live.main.size // MiB, live.size // MiB, live.low
    (192, 192, None)
    """
    main = low = None
    if iomem_text is not None:
        try:
            memory = parse_iomem(iomem_text)
        except LayoutError:
            if not _all_zero_iomem(iomem_text):
                raise
        else:
            main = memory.crash_region() if memory.crash_ranges() else None
            low = memory.crash_low_region()
    sysfs_size = None
    if crash_size_text is not None:
        try:
            sysfs_size = int(crash_size_text.strip(), 10)
        except ValueError:
            raise SourceError(
                f"kexec_crash_size: expected a decimal byte count, got {crash_size_text!r}"
            ) from None
    return LiveReservation(main, low, sysfs_size)


def _all_zero_iomem(text: str) -> bool:
    spans = [line.split(" : ")[0].strip() for line in text.splitlines() if " : " in line]
    return bool(spans) and all(set(span) <= {"0", "-"} for span in spans)


def read_live_reservation(
    iomem: Path = Path("/proc/iomem"),
    crash_size: Path = Path("/sys/kernel/kexec_crash_size"),
) -> LiveReservation:
    """`live_reservation` over files; a missing file counts as unavailable.

    >>> read_live_reservation(Path("/nonexistent"), Path("/nonexistent")).size
    0
    """
    return live_reservation(_read_optional(iomem), _read_optional(crash_size))


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SourceError(f"{path}: {error.strerror}") from None


# --------------------------------------------------------------------------- estimate


class DumpTarget(enum.StrEnum):
    LOCAL = "local"  # a file system on a local disk
    RAW = "raw"  # a raw block device
    NFS = "nfs"
    SSH = "ssh"


@dataclass(frozen=True)
class Calibration:
    """Constants of the memory model, in bytes.

    The class defaults are priors. `DEFAULT_CALIBRATION` replaces the ones
    the measurements determine (``kernel_runtime``, ``per_crashed_gib``,
    ``per_cpu``, ``headroom``) with the values bench/calibrate_crashkernel.py
    fitted to real QEMU crash cycles and stored in calibration.json.
    A crash cycle only shows the total a capture needs, so the constant terms
    (userspace, makedumpfile's base, the local target) cannot be told apart:
    they keep small priors and ``kernel_runtime`` is fitted as the rest, which
    makes the total right for the calibrated recipe and the split approximate.
    ``target_nfs`` is measured on one guest (NFSv4 to nfs-ganesha over QEMU's
    user network); ``target_ssh`` and ``target_raw`` are guesses.
    """

    # Kernel allocations at run time that depend on neither CPUs nor RAM:
    # slab, page tables, vmalloc, sysfs/procfs; fitted (high placeholder without it).
    kernel_runtime: int = 40 * MiB
    # Per CPU the capture kernel brings up: per-CPU areas, stacks, per-CPU caches.
    per_cpu: int = 2 * MiB
    # Per GiB of crashed RAM the capture describes: /proc/vmcore's range list
    # and ELF headers, reading the old kernel's mem_map.
    per_crashed_gib: int = 256 * KiB
    # The capture kernel's own struct page per page of its memory (64 bytes on
    # 64-bit) and its large hash tables (openSUSE's analysis: 232 pointers per
    # MiB), both proportional to the reservation itself.
    struct_page: int = 64
    hash_per_mib: int = 232 * 8
    page_size: int = 4096
    # /init and busybox processes (their files are already counted in the
    # unpacked initrd; this is stacks, heaps and page tables).
    userspace: int = 2 * MiB
    # makedumpfile's heap beyond its bitmaps: page and compression buffers.
    makedumpfile: int = 4 * MiB
    # makedumpfile's calculate_cyclic_buffer_size() caps each bitmap buffer at 4 MiB.
    makedumpfile_bitmap_cap: int = 4 * MiB
    # Dump target: dirty page cache and file system or network stack while writing.
    target_local: int = 4 * MiB
    target_raw: int = 2 * MiB
    target_nfs: int = 24 * MiB
    target_ssh: int = 32 * MiB
    # Room for run-to-run variation and the 8 MiB resolution of the measurement.
    headroom: int = 8 * MiB
    # Sizes in a recommendation are multiples of this (the calibration's search step).
    recommend_step: int = 8 * MiB

    def target(self, kind: DumpTarget) -> int:
        return {
            DumpTarget.LOCAL: self.target_local,
            DumpTarget.RAW: self.target_raw,
            DumpTarget.NFS: self.target_nfs,
            DumpTarget.SSH: self.target_ssh,
        }[kind]


# The constants bench/calibrate_crashkernel.py fitted to real crash cycles; the
# file names the command that regenerates it and holds the measurements.
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


def load_calibration(path: Path = CALIBRATION_FILE) -> Calibration:
    """`Calibration` with the measured constants of ``path`` over the defaults.

    A missing file gives the defaults; a malformed one is an internal error
    (the file ships with the package), reported as `FitError` naming the key.

    >>> load_calibration(Path("/nonexistent")) == Calibration()
    True
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Calibration()
    except (OSError, ValueError) as error:
        raise FitError(f"{path}: cannot read the calibration ({error})") from None
    constants = record.get("constants") if isinstance(record, dict) else None
    if not isinstance(constants, dict):
        raise FitError(f"{path}: constants: expected a table")
    known = {item.name for item in fields(Calibration)}
    for key, value in constants.items():
        if key not in known:
            raise FitError(f"{path}: constants.{key}: not a Calibration field")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FitError(f"{path}: constants.{key}: expected a byte count, got {value!r}")
    return replace(Calibration(), **constants)


DEFAULT_CALIBRATION = load_calibration()


@dataclass(frozen=True)
class Term:
    """One named part of the estimate, with a sentence saying what it covers."""

    name: str
    bytes: int
    explanation: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "bytes": self.bytes, "explanation": self.explanation}


@dataclass(frozen=True)
class Estimate:
    """The memory a capture needs, as a sum of terms.

    >>> e = Estimate((Term("kernel", 30 * MiB, "image"), Term("initrd", 10 * MiB, "rootfs")))
    >>> e.total // MiB, e.largest.name
    (40, 'kernel')
    """

    terms: tuple[Term, ...]

    @property
    def total(self) -> int:
        return sum(term.bytes for term in self.terms)

    @property
    def largest(self) -> Term:
        if not self.terms:
            raise FitError("the estimate has no terms")
        return max(self.terms, key=lambda term: term.bytes)

    def to_json(self) -> dict[str, object]:
        return {"total": self.total, "terms": [term.to_json() for term in self.terms]}


@dataclass(frozen=True)
class CaptureProfile:
    """What the capture consists of; `estimate` turns it into bytes for one RAM size.

    ``kernel_memory_size`` is the capture kernel's footprint at its load
    address (bzImage ``init_size``, arm64 ``image_size``), from `KernelImage`.
    """

    kernel_memory_size: int
    initrd_compressed_size: int
    initrd_unpacked_size: int
    cpus: int = 1
    dump_target: DumpTarget | str = DumpTarget.LOCAL
    makedumpfile: bool = True
    # The kernel's decompressor while it unpacks the initrd (zstd window, xz dictionary).
    initrd_decompressor_size: int = 0

    def __post_init__(self) -> None:
        try:
            # Accept the recipe's plain string; store the enum.
            object.__setattr__(self, "dump_target", DumpTarget(self.dump_target))
        except ValueError:
            choices = ", ".join(target.value for target in DumpTarget)
            raise RecipeError(
                f"capture profile: dump target {self.dump_target!r} is not one of {choices}"
            ) from None
        for name in (
            "kernel_memory_size",
            "initrd_compressed_size",
            "initrd_unpacked_size",
            "initrd_decompressor_size",
        ):
            if getattr(self, name) < 0:
                raise RecipeError(f"capture profile: {name} must not be negative")
        if self.cpus < 1:
            raise RecipeError(f"capture profile: cpus must be at least 1, got {self.cpus}")


def estimate(
    profile: CaptureProfile, ram_bytes: int, calibration: Calibration = DEFAULT_CALIBRATION
) -> Estimate:
    """Estimate what capturing a crash of a machine with ``ram_bytes`` of RAM needs.

    The terms are peaks added together (the compressed initrd, say, is freed
    after unpacking), which errs on the large side; calibration absorbs that.

    >>> profile = CaptureProfile(40 * MiB, 2 * MiB, 6 * MiB, cpus=1, dump_target="raw")
    >>> e = estimate(profile, 1 * GiB)
    >>> [term.name for term in e.terms][:3], e.total > 48 * MiB + DEFAULT_CALIBRATION.headroom
    (['kernel', 'initrd_compressed', 'initrd_unpacked'], True)
    """
    cal = calibration
    target = DumpTarget(profile.dump_target)
    crashed_gib = ram_bytes / GiB
    terms = [
        Term(
            "kernel",
            profile.kernel_memory_size,
            "capture kernel at its load address (init_size: text, data, bss, early tables)",
        ),
        Term(
            "initrd_compressed",
            profile.initrd_compressed_size,
            "compressed initrd as loaded; lives until unpacking ends",
        ),
        Term(
            "initrd_unpacked",
            profile.initrd_unpacked_size,
            "unpacked initrd files in the root file system, for the whole capture",
        ),
        Term(
            "initrd_decompressor",
            profile.initrd_decompressor_size,
            "the kernel's decompressor workspace while it unpacks the initrd "
            "(zstd window or xz dictionary, with its buffers)",
        ),
        Term(
            "kernel_runtime",
            cal.kernel_runtime,
            "kernel run-time allocations independent of CPUs and RAM (slab, page tables, "
            "sysfs), fitted to QEMU crash cycles by bench/calibrate_crashkernel.py",
        ),
        Term(
            "per_cpu",
            profile.cpus * cal.per_cpu,
            f"{profile.cpus} CPU(s) x {format_size(cal.per_cpu)}: per-CPU areas, stacks, caches",
        ),
        Term(
            "crashed_ram",
            math.ceil(crashed_gib * cal.per_crashed_gib),
            f"describing {format_size(ram_bytes)} of crashed RAM (/proc/vmcore ranges, "
            "ELF headers, old mem_map reads)",
        ),
        Term("userspace", cal.userspace, "/init and busybox processes: stacks, heaps"),
    ]
    if profile.makedumpfile:
        pages = ram_bytes // cal.page_size
        # calculate_cyclic_buffer_size(): min(60% free, 4 MiB, max_mapnr * 2 / 8);
        # we count one such buffer per bitmap and ignore the free-memory limit.
        bitmap = min(pages * 2 // 8, cal.makedumpfile_bitmap_cap)
        terms.append(
            Term(
                "makedumpfile",
                cal.makedumpfile + 2 * bitmap,
                f"makedumpfile: {format_size(cal.makedumpfile)} base plus two cyclic bitmap "
                f"buffers of {format_size(bitmap)} each",
            )
        )
    terms.append(
        Term(
            "dump_target",
            cal.target(target),
            f"buffers for the {target.value} dump target (page cache, file system or network)",
        )
    )
    # The reservation pays for its own struct pages and hash tables; solving
    # needed = base + needed * fraction gives the term below.
    fraction = cal.struct_page / cal.page_size + cal.hash_per_mib / MiB
    base = sum(term.bytes for term in terms)
    needed = math.ceil(base / (1 - fraction))
    terms.append(
        Term(
            "memmap",
            needed - base,
            f"struct page and hash tables for the reservation itself ({fraction:.2%} of it)",
        )
    )
    # A margin on top of the measured total, not an allocation: outside the memmap term.
    terms.append(
        Term(
            "headroom",
            cal.headroom,
            "margin over the calibrated total for run-to-run variation and the "
            "8 MiB resolution of the measurement",
        )
    )
    return Estimate(tuple(terms))


# --------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class FitRow:
    """The verdict for one RAM size. ``needed``/``fits``/``margin`` are None without an estimate."""

    ram: int
    reservation: Reservation
    estimate: Estimate | None

    @property
    def reserved(self) -> int:
        return self.reservation.size

    @property
    def needed(self) -> int | None:
        return None if self.estimate is None else self.estimate.total

    @property
    def fits(self) -> bool | None:
        needed = self.needed
        # The low range feeds swiotlb and DMA; only the main region is counted.
        return None if needed is None else self.reserved > 0 and self.reserved >= needed

    @property
    def margin(self) -> int | None:
        needed = self.needed
        return None if needed is None else self.reserved - needed

    def to_json(self) -> dict[str, object]:
        row: dict[str, object] = {
            "ram": self.ram,
            "reserved": self.reserved,
            "offset": self.reservation.offset,
            "low": self.reservation.low,
            "cma": self.reservation.cma,
            "placement": self.reservation.placement.value,
            "alignment": self.reservation.alignment,
            "notes": list(self.reservation.notes),
        }
        if self.estimate is not None:
            row |= {
                "needed": self.needed,
                "fits": self.fits,
                "margin": self.margin,
                "largest_term": self.estimate.largest.name,
                "terms": [term.to_json() for term in self.estimate.terms],
            }
        return row


@dataclass(frozen=True)
class FitReport:
    """Reservation and verdict per RAM size, plus the smallest recommended `crashkernel=`."""

    spec: str | None
    arch: str
    rows: tuple[FitRow, ...]
    recommended: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool | None:
        """True when every RAM size fits; None when there was no estimate."""
        verdicts = [row.fits for row in self.rows]
        if not verdicts or any(verdict is None for verdict in verdicts):
            return None
        return all(verdicts)

    @property
    def worst(self) -> FitRow | None:
        """The row with the smallest margin (None without an estimate)."""
        judged = [row for row in self.rows if row.margin is not None]
        return min(judged, key=lambda row: row.margin or 0) if judged else None

    @property
    def largest_term(self) -> Term | None:
        """The largest term of the worst row's estimate."""
        worst = self.worst
        return worst.estimate.largest if worst and worst.estimate else None

    @property
    def label(self) -> str:
        """The spec as the user would write it on a command line."""
        if self.spec is None:
            return "no crashkernel="
        return " ".join(f"crashkernel={value}" for value in self.spec.split())

    def reason(self) -> str:
        """One line: the verdict, naming the largest term when it does not fit."""
        worst = self.worst
        if worst is None or worst.needed is None:
            return f"{self.label}: no estimate, reservation only"
        ram = format_size(worst.ram)
        if worst.fits:
            return (
                f"{self.label} fits every RAM size; tightest {ram}: "
                f"{_mib(worst.margin or 0)} to spare"
            )
        largest = worst.estimate.largest if worst.estimate else None
        hint = f"; recommended crashkernel={self.recommended}" if self.recommended else ""
        return (
            f"{self.label} does not fit on {ram} RAM: needs {_mib(worst.needed)}, "
            f"reserved {_mib(worst.reserved)}; largest term {largest.name if largest else '?'} "
            f"({_mib(largest.bytes if largest else 0)}){hint}"
        )

    def check(self) -> None:
        """Raise `FitError` (exit code 3) with `reason` unless every RAM size fits."""
        if self.fits is False:
            raise FitError(self.reason())

    def to_json(self) -> dict[str, object]:
        largest = self.largest_term
        return {
            "crashkernel": self.spec,
            "arch": self.arch,
            "fits": self.fits,
            "recommended": self.recommended,
            "largest_term": largest.to_json() if largest else None,
            "notes": list(self.notes),
            "rams": [row.to_json() for row in self.rows],
        }


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MiB"


Estimator = CaptureProfile | Estimate | Callable[[int], Estimate]


def _estimator(
    estimate_input: Estimator | None, calibration: Calibration
) -> Callable[[int], Estimate] | None:
    if estimate_input is None:
        return None
    if isinstance(estimate_input, CaptureProfile):
        profile = estimate_input
        return lambda ram: estimate(profile, ram, calibration)
    if isinstance(estimate_input, Estimate):
        fixed = estimate_input
        return lambda _ram: fixed
    return estimate_input


def recommend(
    ram_list: Iterable[int],
    needed_for: Callable[[int], int],
    *,
    step: int = DEFAULT_CALIBRATION.recommend_step,
) -> tuple[str | None, tuple[str, ...]]:
    """The smallest `crashkernel=` that gives every RAM size what ``needed_for`` says.

    One range per distinct RAM size rounded up to 128 MiB, starting there
    (start inclusive) and ending where the next begins; the last is open. Each
    size covers the largest RAM that lands in its range, rounded up to
    ``step``; neighbours with equal sizes merge, and a single size is written
    plainly. Returns (None, reasons) when some RAM size cannot hold its needs.

    >>> recommend([1 * GiB, 4 * GiB, 64 * GiB], lambda ram: 100 * MiB + ram // 1024)
    ('1G-4G:104M,4G-:168M', ())
    """
    rams = sorted(set(ram_list))
    if not rams:
        return None, ("no RAM size given",)
    if step <= 0:
        raise RecipeError(f"recommendation step must be positive, got {step}")
    starts = sorted({_roundup(ram, RAM_ROUNDING) for ram in rams})
    entries: list[RangeEntry] = []
    problems: list[str] = []
    for index, start in enumerate(starts):
        is_last = index + 1 == len(starts)
        # Rounded RAM values are multiples of 128 MiB: the largest in [start, next) is next - 128M.
        top = start if is_last else starts[index + 1] - RAM_ROUNDING
        listed = [ram for ram in rams if _roundup(ram, RAM_ROUNDING) == start]
        need = max(needed_for(top), *(needed_for(ram) for ram in listed))
        size = _roundup(need, step)
        smallest = min(listed)
        if size >= smallest:
            problems.append(
                f"{format_size(smallest)} RAM cannot hold a capture needing {format_size(size)}"
            )
        end = None if is_last else starts[index + 1]
        entries.append(RangeEntry(start, end, size))
    if problems:
        return None, tuple(problems)
    merged: list[RangeEntry] = []
    for entry in entries:
        if merged and merged[-1].size == entry.size:
            merged[-1] = RangeEntry(merged[-1].start, entry.end, entry.size)
        else:
            merged.append(entry)
    if len(merged) == 1:
        return format_size(merged[0].size), ()
    return ",".join(str(entry) for entry in merged), ()


def fit(
    spec: str | CrashkernelSpec | CrashkernelConfig | None,
    ram_list: Sequence[int],
    estimate_input: Estimator | None = None,
    *,
    arch: str = "x86_64",
    calibration: Calibration = DEFAULT_CALIBRATION,
    low_ram: int | None = None,
) -> FitReport:
    """Judge ``spec`` against each RAM size in ``ram_list``.

    ``estimate_input`` is a `CaptureProfile` (estimated per RAM size with
    ``calibration``), a fixed `Estimate`, a function RAM -> `Estimate`, or
    None for a reservation-only report (no verdict, no recommendation).
    ``spec`` None means no `crashkernel=` at all: nothing is reserved.

    >>> report = fit("256M", [1 * GiB, 4 * GiB],
    ...              Estimate((Term("everything", 200 * MiB, "all of it"),)))
    >>> report.fits, report.recommended, [row.margin // MiB for row in report.rows]
    (True, '200M', [56, 56])
    >>> report.to_json()["rams"][0]["reserved"] // MiB
    256
    """
    if not ram_list:
        raise RecipeError("fit: give at least one RAM size")
    params = arch_crash(arch)
    config = None if spec is None else _as_config(spec)
    estimator = _estimator(estimate_input, calibration)
    rows = []
    for ram in ram_list:
        if config is None:
            reserved = Reservation(
                ram,
                params.name,
                0,
                params.crash_align,
                None,
                Placement.NONE,
                notes=("no crashkernel= given",),
            )
        else:
            reserved = reservation(config, ram, params.name, low_ram=low_ram)
        rows.append(FitRow(ram, reserved, estimator(ram) if estimator else None))
    recommended: str | None = None
    notes: tuple[str, ...] = ()
    if estimator is not None:
        recommended, notes = recommend(
            ram_list, lambda ram: estimator(ram).total, step=calibration.recommend_step
        )
    return FitReport(
        None if config is None else str(config).replace("crashkernel=", ""),
        params.name,
        tuple(rows),
        recommended,
        notes,
    )
