"""Where the running kernel tells its kexec state in /sys/kernel, new files first.

Linux 6.19 gathered the kexec files in `/sys/kernel/kexec/` (`loaded`,
`crash_loaded`, `crash_size`, `crash_cma_ranges`; kernel/kexec_core.c) and
left the flat `/sys/kernel/kexec_NAME` names as symbolic links to them
(deprecated, to go after 2028). Older kernels have only the flat files; the
CMA ranges of `crashkernel=,cma` first came as the flat
`kexec_crash_cma_ranges`. Each value is looked up on its own, so a kernel
with some files moved and others not reads right too. Everything that reads
the state asks here (Python, the service unit's shell check, the messages);
the C loader's `--status` (builder/kexec/loader/main.c) keeps the same order.
"""

from __future__ import annotations

import shlex
from enum import Enum
from pathlib import Path

SYS_KERNEL = Path("/sys/kernel")


class KexecFile(Enum):
    """One kexec value; the value is its name in /sys/kernel/kexec/ (6.19+)."""

    LOADED = "loaded"
    CRASH_LOADED = "crash_loaded"
    CRASH_SIZE = "crash_size"
    CRASH_CMA_RANGES = "crash_cma_ranges"

    def candidates(self, sys_kernel: Path = SYS_KERNEL) -> tuple[Path, ...]:
        """The files that may hold the value, the 6.19 one first.

        >>> [str(p) for p in KexecFile.CRASH_SIZE.candidates(Path("/sys/kernel"))]
        ['/sys/kernel/kexec/crash_size', '/sys/kernel/kexec_crash_size']
        >>> [str(p) for p in KexecFile.LOADED.candidates(Path("/sys/kernel"))]
        ['/sys/kernel/kexec/loaded', '/sys/kernel/kexec_loaded']
        """
        return (sys_kernel / "kexec" / self.value, sys_kernel / f"kexec_{self.value}")

    def path(self, sys_kernel: Path = SYS_KERNEL) -> Path:
        """The first candidate that exists, else the old one (whose absence callers report)."""
        for candidate in self.candidates(sys_kernel):
            if candidate.exists():
                return candidate
        return self.candidates(sys_kernel)[-1]

    def read(self, sys_kernel: Path = SYS_KERNEL) -> str | None:
        """The file's text, or None when no candidate can be read."""
        for candidate in self.candidates(sys_kernel):
            try:
                return candidate.read_text(encoding="ascii", errors="replace")
            except OSError:
                continue
        return None

    def described(self, sys_kernel: Path = SYS_KERNEL) -> str:
        """The candidates, for a message that says none could be read.

        >>> KexecFile.CRASH_LOADED.described()
        '/sys/kernel/kexec/crash_loaded or /sys/kernel/kexec_crash_loaded'
        """
        return " or ".join(str(path) for path in self.candidates(sys_kernel))

    def shell_read(self, default: str, sys_kernel: Path = SYS_KERNEL) -> str:
        r"""A POSIX shell expression printing the value, the same order; `default` without one.

        >>> print(KexecFile.CRASH_SIZE.shell_read("0").replace(" || ", "\n"))
        cat /sys/kernel/kexec/crash_size 2>/dev/null
        cat /sys/kernel/kexec_crash_size 2>/dev/null
        echo 0
        """
        paths = self.candidates(sys_kernel)
        reads = [f"cat {shlex.quote(str(path))} 2>/dev/null" for path in paths]
        return " || ".join([*reads, f"echo {shlex.quote(default)}"])


def read_int(item: KexecFile, sys_kernel: Path = SYS_KERNEL) -> int | None:
    """A decimal value (`crash_loaded`, `crash_size`); None when missing or not a number."""
    text = item.read(sys_kernel)
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


def parse_cma_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """The CMA ranges given to the crash kernel, as (start, end inclusive) pairs.

    The kernel writes one `%08llx-%08llx` line per range (kexec_core.c).

    >>> parse_cma_ranges("7c000000-7fffffff\\n")
    ((2080374784, 2147483647),)
    >>> parse_cma_ranges("")
    ()
    """
    ranges = []
    for line in text.split():
        start, _, end = line.partition("-")
        try:
            ranges.append((int(start, 16), int(end, 16)))
        except ValueError:
            continue  # a line of another shape says nothing about ranges
    return tuple(ranges)


def read_cma_ranges(sys_kernel: Path = SYS_KERNEL) -> tuple[tuple[int, int], ...] | None:
    """The crash kernel's CMA ranges; None when this kernel has no such file (before `,cma`)."""
    text = KexecFile.CRASH_CMA_RANGES.read(sys_kernel)
    return None if text is None else parse_cma_ranges(text)
