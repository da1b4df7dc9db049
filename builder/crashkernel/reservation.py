"""The reservation a `crashkernel=` value gets on a machine with a given RAM size.

Follows kernel/crash_reserve.c (parse_crashkernel(), reserve_crashkernel_generic())
with the per-architecture constants of `builder.arch.CrashReserveRules`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from builder.arch import DEFAULT_ARCH, SWIOTLB_DEFAULT_SIZE, Arch, CrashReserveRules, arch_info
from builder.crashkernel_syntax import (
    RAM_ROUNDING,
    CrashkernelConfig,
    CrashkernelSpec,
    RangesSpec,
    SimpleSpec,
    as_config,
)
from builder.errors import RecipeError
from builder.units import align_up, format_size


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

    >>> from builder.units import GiB, MiB
    >>> reservation("crashkernel=256M,high crashkernel=64M,cma", 8 * GiB).total // MiB
    576
    """

    ram: int
    arch: Arch
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
            "arch": self.arch.value,
            "reserved": self.size,
            "alignment": self.alignment,
            "offset": self.offset,
            "placement": self.placement.value,
            "low": self.low,
            "cma": self.cma,
            "notes": list(self.notes),
        }


def kernel_series(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a kernel release such as ``6.1.0-57-arm64``; None if it has none.

    >>> kernel_series("6.1.0-57-arm64"), kernel_series("6.12.117+deb13-arm64"), kernel_series("x")
    ((6, 1), (6, 12), None)
    """
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def crash_rules(arch: Arch | str, kernel: str | None = None) -> tuple[Arch, CrashReserveRules]:
    """``arch`` and its reservation rules (for kernel release ``kernel``, None: current).

    A `RecipeError` where we do not predict them.

    >>> from builder.units import MiB
    >>> crash_rules("amd64")[1].align // MiB
    16
    >>> crash_rules("arm64", "6.1.0-57-arm64")[1].high_fallback
    False
    >>> crash_rules("s390x")
    Traceback (most recent call last):
    ...
    builder.errors.RecipeError: kdump-build does not predict the reservation on s390x
    """
    info = arch_info(arch)
    if info.crash is None:
        raise RecipeError(f"kdump-build does not predict the reservation on {info.arch}")
    return info.arch, info.crash.for_kernel(kernel_series(kernel))


class _NothingReserved(Exception):
    """A step found that the kernel reserves nothing; ``reason`` ("" when a note said why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Request:
    """What the selected `crashkernel=` value asks for at one RAM size."""

    size: int
    offset: int | None
    high: bool  # `,high`: above low_max first, else below it
    low_size: int  # the low range that comes with a placement above low_max


def reservation(
    spec: str | CrashkernelSpec | CrashkernelConfig | None,
    ram_bytes: int,
    arch: Arch | str = DEFAULT_ARCH,
    *,
    low_ram: int | None = None,
    swiotlb_bytes: int = SWIOTLB_DEFAULT_SIZE,
    kernel: str | None = None,
) -> Reservation:
    """Predict the reservation for a machine with ``ram_bytes`` of system RAM.

    ``spec`` None means no `crashkernel=` at all. ``low_ram`` is the RAM below
    4 GiB; it only decides whether the main region lands above 4 GiB (then x86
    adds a low range). Default: RAM up to 2 GiB (a q35 guest's split), see
    `CrashReserveRules.assumed_low_ram`. ``kernel`` is the release of the
    kernel that reserves (its rules may differ by version); None: current rules.

    >>> from builder.units import GiB, MiB
    >>> r = reservation("512M-2G:64M,2G-:128M", 4 * GiB)
    >>> r.size // MiB, r.alignment // MiB, r.offset, r.low
    (128, 16, None, 0)
    >>> r = reservation("crashkernel=512M,high", 16 * GiB)
    >>> r.placement.value, r.low // MiB
    ('high', 256)
    >>> reservation("crashkernel=256M,high", 4 * GiB, "arm64", kernel="6.1.0-57-arm64").low
    0
    """
    arch, rules = crash_rules(arch, kernel)
    if ram_bytes <= 0:
        raise RecipeError(f"RAM size must be positive, got {ram_bytes}")
    notes: list[str] = []
    try:
        if spec is None:
            raise _NothingReserved("no crashkernel= given")
        config = as_config(spec)
        request = _request(config, ram_bytes, rules, swiotlb_bytes, notes)
        _check_size(request.size, ram_bytes, notes)
        below_4g = min(ram_bytes, rules.assumed_low_ram if low_ram is None else low_ram)
        placement, low = _place(request, below_4g, ram_bytes - below_4g, rules, notes)
    except _NothingReserved as nothing:
        if nothing.reason:
            notes.append(nothing.reason)
        return Reservation(
            ram_bytes, arch, 0, rules.align, None, Placement.NONE, notes=tuple(notes)
        )
    return Reservation(
        ram_bytes,
        arch,
        request.size,
        rules.align,
        request.offset,
        placement,
        low=low,
        cma=_cma_size(config, rules, kernel, notes),
        notes=tuple(notes),
    )


def _cma_size(
    config: CrashkernelConfig, rules: CrashReserveRules, kernel: str | None, notes: list[str]
) -> int:
    """The `,cma` part the capture can use: 0 where the kernel or our loaders cannot."""
    if config.cma is None:
        return 0
    if not rules.supports_cma(kernel_series(kernel)):
        notes.append("',cma' is not used here: this kernel or architecture has no CMA crash part")
        return 0
    return config.cma.size


def _request(
    config: CrashkernelConfig,
    ram_bytes: int,
    rules: CrashReserveRules,
    swiotlb_bytes: int,
    notes: list[str],
) -> _Request:
    """The value the kernel selects (last plain one, else `,high` with its `,low`)."""
    if config.main is not None:
        if config.high or config.low:
            notes.append("',high'/',low' are ignored when a plain crashkernel= is present")
        size, offset = _main_size(config.main, ram_bytes, notes)
        # The fallback to high memory always uses the default low size.
        return _Request(size, offset, high=False, low_size=rules.default_low(swiotlb_bytes))
    if config.high is not None:
        low_size = config.low.size if config.low else rules.default_low(swiotlb_bytes)
        return _Request(config.high.size, None, high=True, low_size=low_size)
    raise _NothingReserved("no plain or ',high' crashkernel= value: the kernel reserves nothing")


def _main_size(main: SimpleSpec | RangesSpec, ram: int, notes: list[str]) -> tuple[int, int | None]:
    """Size and offset of a plain value; a ranges value picks its size by rounded RAM."""
    if isinstance(main, SimpleSpec):
        return main.size, main.offset
    total_mem = align_up(ram, RAM_ROUNDING)
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


def _check_size(size: int, ram_bytes: int, notes: list[str]) -> None:
    """parse_crashkernel() refuses a size of 0 and one not below system RAM."""
    if size == 0:
        # A range miss already said why; a literal 0 has not.
        raise _NothingReserved("" if notes else "crashkernel size is 0: nothing reserved")
    if size >= ram_bytes:
        raise _NothingReserved(
            f"size {format_size(size)} is not below system RAM: the kernel refuses it"
        )


def _place(
    request: _Request,
    below_4g: int,
    above_4g: int,
    rules: CrashReserveRules,
    notes: list[str],
) -> tuple[Placement, int]:
    """Where the main region lands, and the low range that comes with it."""
    if request.offset is not None:
        return _place_fixed(request.offset, rules, notes), 0
    size = request.size
    if request.high:
        if above_4g >= size:
            return Placement.HIGH, request.low_size
        if size < below_4g:
            notes.append("no RAM above 4G for ',high': falls back below 4G without a low range")
            return Placement.LOW, 0
    elif size < below_4g:
        return Placement.LOW, 0
    elif not rules.high_fallback:
        raise _NothingReserved(
            f"no room for {format_size(size)} below 4G, and this kernel does not fall back "
            "above it (use ',high')"
        )
    elif above_4g >= size:
        notes.append("does not fit below 4G: falls back above 4G with the default low range")
        return Placement.HIGH, request.low_size
    raise _NothingReserved(f"no room for {format_size(size)} above or below 4G")


def _place_fixed(offset: int, rules: CrashReserveRules, notes: list[str]) -> Placement:
    # reserve_crashkernel_generic() asks memblock for an aligned block inside
    # [offset, offset + size): an unaligned offset can never be satisfied.
    if offset % rules.align:
        raise _NothingReserved(
            f"offset {offset:#x} is not a multiple of {format_size(rules.align)} "
            "(CRASH_ALIGN): current kernels refuse it (x86 before the generic code "
            "accepted 1M alignment)"
        )
    if offset >= rules.low_max:
        notes.append("a fixed offset above 4G gets no extra low range in the generic code")
    return Placement.FIXED
