"""Sizes and alignment: the one home of the binary units and of how a size is written.

Every product measures memory in bytes; these are the names it uses for
them, the alignment arithmetic, and the two ways a size is shown to a
person: exact in the kernel's memparse spelling (``192M``), or rounded
(``61.1 MiB``).
"""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

# The page kexec works in: segments are placed and sized in 4 KiB pages on
# every architecture Debian ships (arm64's Debian kernels use 4 KiB pages too).
PAGE_SIZE = 4 * KiB

_EXACT_UNITS = ((TiB, "T"), (GiB, "G"), (MiB, "M"), (KiB, "K"))


def align_up(value: int, alignment: int) -> int:
    """The smallest multiple of `alignment` at or above `value`.

    >>> align_up(0x1001, 0x1000), align_up(0x1000, 0x1000), align_up(5, 3)
    (8192, 4096, 6)
    """
    alignment = max(alignment, 1)
    return -(-value // alignment) * alignment


def align_down(value: int, alignment: int) -> int:
    """The largest multiple of `alignment` at or below `value`.

    >>> align_down(0x1fff, 0x1000)
    4096
    """
    alignment = max(alignment, 1)
    return value // alignment * alignment


def page_up(value: int) -> int:
    """`value` rounded up to whole pages.

    >>> page_up(1), page_up(4096)
    (4096, 4096)
    """
    return align_up(value, PAGE_SIZE)


def format_size(size: int) -> str:
    """The shortest exact memparse spelling of `size` (largest unit that divides it).

    >>> format_size(192 * MiB), format_size(4 * GiB), format_size(4224 * MiB), format_size(1000)
    ('192M', '4G', '4224M', '1000')
    """
    for unit, suffix in _EXACT_UNITS:
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def format_mib(size: int, decimals: int = 1) -> str:
    """`size` in MiB, rounded, for messages and reports.

    >>> format_mib(64 * MiB + 100 * KiB), format_mib(2_573_953, 2)
    ('64.1 MiB', '2.45 MiB')
    """
    return f"{size / MiB:.{decimals}f} MiB"


def describe_size(size: int) -> str:
    """`format_size` when it is exact to a unit, else MiB with two decimals.

    >>> describe_size(4 * MiB), describe_size(4 * MiB + 5)
    ('4M', '4.00 MiB')
    """
    exact = format_size(size)
    return exact if not exact.isdigit() else format_mib(size, 2)
