"""`crashkernel=` syntax: sizes with memparse rules and every form of the value, parsed.

Parsing follows the kernel's rules (kernel/crash_reserve.c, lib/cmdline.c
memparse, Documentation/admin-guide/kernel-parameters.txt), with one
deliberate difference: where the kernel silently ignores trailing garbage or
unchecked entries, we refuse the value, since a recipe with a typo should
fail at build time, not reserve something unexpected at boot.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from builder.errors import RecipeError
from builder.units import MiB, format_size

# parse_crashkernel_mem() rounds system RAM up to this before matching ranges,
# because firmware hides a little RAM and "4G" machines report slightly less.
RAM_ROUNDING = 128 * MiB

_U64_LIMIT = 1 << 64
_SUFFIX_SHIFTS = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_DIGITS = {
    8: frozenset("01234567"),
    10: frozenset("0123456789"),
    16: frozenset("0123456789abcdefABCDEF"),
}


class CrashkernelSyntaxError(RecipeError):
    """A malformed `crashkernel=` value; ``position`` is the 0-based index of the bad character.

    >>> str(CrashkernelSyntaxError("64Q", 2, "expected the end", "crashkernel"))
    "crashkernel='64Q': expected the end at index 2 ('Q')"
    """

    def __init__(self, value: str, position: int, reason: str, where: str) -> None:
        self.value = value
        self.position = position
        self.reason = reason
        at = repr(value[position]) if position < len(value) else "end of value"
        super().__init__(f"{where}={value!r}: {reason} at index {position} ({at})")


# --------------------------------------------------------------------------- sizes


def memparse(text: str, pos: int = 0) -> tuple[int, int]:
    """The kernel's memparse(): number (C base rules) plus optional K/M/G/T/P/E suffix.

    Returns (value, end); end == pos means no number was there. Like
    simple_strtoull with base 0, "0x" + hex digit is hex, a leading 0 is octal
    ("010M" is 8 MiB), so "08" stops after the "0".

    >>> memparse("010M"), memparse("0x1fk"), memparse("08"), memparse("@1G", 1), memparse("M")
    ((8388608, 4), (31744, 5), (0, 1), (1073741824, 3), (0, 0))
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
    number, end = memparse(value, pos)
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
    """``start-[end]:size``; ``end`` None means unbounded. End is exclusive.

    >>> str(RangeEntry(2 * 1024 * MiB, None, 128 * MiB))
    '2G-:128M'
    """

    start: int
    end: int | None
    size: int

    def matches(self, total_mem: int) -> bool:
        """Does RAM (already rounded up to `RAM_ROUNDING`) fall in this range?

        >>> entry = RangeEntry(512 * MiB, 2048 * MiB, 64 * MiB)
        >>> entry.matches(512 * MiB), entry.matches(2048 * MiB)
        (True, False)
        """
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

    >>> str(parse_crashkernel_args("crashkernel=1G,high crashkernel=256M"))
    'crashkernel=256M crashkernel=1G,high'
    """

    main: SimpleSpec | RangesSpec | None = None
    high: SuffixSpec | None = None
    low: SuffixSpec | None = None
    cma: SuffixSpec | None = None

    def __str__(self) -> str:
        values = [spec.text for spec in (self.main, self.high, self.low, self.cma) if spec]
        return command_line_words(" ".join(values))


def command_line_words(value: str) -> str:
    """A value of one or more words ("72M 48M,cma") as the kernel command line takes it.

    >>> command_line_words("72M 48M,cma")
    'crashkernel=72M crashkernel=48M,cma'
    """
    return " ".join(f"crashkernel={word}" for word in value.split())


# --------------------------------------------------------------------------- parsing


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
        entry, pos = _parse_range_entry(text, pos, where)
        entries.append(entry)
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


def _parse_range_entry(text: str, pos: int, where: str) -> tuple[RangeEntry, int]:
    """One ``start-[end]:size`` at ``pos``; returns it and where it ends."""
    start, pos = _size_at(text, pos, where, "a range start")
    if pos >= len(text) or text[pos] != "-":
        raise CrashkernelSyntaxError(text, pos, "expected '-'", where)
    pos += 1
    end = None
    if pos < len(text) and text[pos] != ":":
        end_at = pos
        end, pos = _size_at(text, pos, where, "a range end or ':'")
        if end <= start:
            raise CrashkernelSyntaxError(text, end_at, "range end must be above its start", where)
    if pos >= len(text) or text[pos] != ":":
        raise CrashkernelSyntaxError(text, pos, "expected ':'", where)
    size, pos = _size_at(text, pos + 1, where)
    return RangeEntry(start, end, size), pos


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


def as_config(spec: str | CrashkernelSpec | CrashkernelConfig) -> CrashkernelConfig:
    """Any spelling of a reservation (text, one parsed value, a whole config) as a config.

    >>> as_config(parse_crashkernel("1G,high")).high.size // MiB
    1024
    >>> as_config("256M").main
    SimpleSpec(text='256M', size=268435456, offset=None)
    """
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
