"""The reservation of the running system, read from /proc/iomem and kexec_crash_size."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from builder.errors import LayoutError, SourceError
from builder.kexec.memmap import Range, parse_iomem
from builder.kexecfs import SYS_KERNEL, KexecFile, read_cma_ranges


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
    cma: int = 0  # bytes of the `crashkernel=,cma` ranges (kexec/crash_cma_ranges)

    @property
    def size(self) -> int:
        """Bytes of the main region: sysfs when known, else the iomem range, else 0."""
        if self.sysfs_size is not None:
            return self.sysfs_size
        return self.main.size if self.main else 0

    @property
    def usable(self) -> int:
        """What a capture kernel loaded now runs in: the main region and the `,cma` ranges."""
        return self.size + self.cma

    def to_json(self) -> dict[str, object]:
        return {
            "reserved": self.size,
            "main": self.main.to_json() if self.main else None,
            "low": self.low.to_json() if self.low else None,
            "sysfs_size": self.sysfs_size,
            "cma": self.cma,
        }


def live_reservation(iomem_text: str | None, crash_size_text: str | None = None) -> LiveReservation:
    """Read the reservation from `/proc/iomem` text and `kexec_crash_size` text.

    Either may be None (not available). Zeroed iomem addresses (read as
    non-root) leave ``main``/``low`` unknown rather than wrong.

    >>> from builder.units import MiB
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
    crash_size: Path | None = None,
    sys_kernel: Path = SYS_KERNEL,
) -> LiveReservation:
    """`live_reservation` over files; a missing file counts as unavailable.

    `crash_size` defaults to /sys/kernel/kexec/crash_size, or the older
    kexec_crash_size where the kernel (before 6.19) has only that.

    >>> read_live_reservation(Path("/nonexistent"), Path("/nonexistent")).size
    0
    """
    size_file = crash_size or KexecFile.CRASH_SIZE.path(sys_kernel)
    live = live_reservation(_read_optional(iomem), _read_optional(size_file))
    cma = sum(last + 1 - first for first, last in read_cma_ranges(sys_kernel) or ())
    return replace(live, cma=cma)


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SourceError(f"{path}: {error.strerror}") from None
