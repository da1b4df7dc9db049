"""Which kernels a makedumpfile release knows, and the one line a build says when it is too old.

makedumpfile compares the dumped kernel's release (its first three numbers, as
`get_kernel_version()` parses `6.1.0-57-amd64`) with `LATEST_VERSION`, a
constant of each release, and past it prints "The kernel version is not
supported." and carries on; the dump may keep pages it should have excluded.
The table is each release's `LATEST_VERSION` from makedumpfile.h at its tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.arch import CollectorLimit
from builder.image.initrd import Member, MemberKind

KernelVersion = tuple[int, int, int]

# makedumpfile release -> the newest kernel it supports (LATEST_VERSION in makedumpfile.h).
LATEST_KERNEL: dict[KernelVersion, KernelVersion] = {
    (1, 7, 0): (5, 15, 0),
    (1, 7, 1): (5, 17, 1),
    (1, 7, 2): (6, 0, 1),
    (1, 7, 3): (6, 3, 0),
    (1, 7, 4): (6, 6, 0),
    (1, 7, 5): (6, 8, 4),
    (1, 7, 6): (6, 11, 4),
    (1, 7, 7): (6, 14, 2),
    (1, 7, 8): (6, 17, 4),
    (1, 7, 9): (7, 0, 0),
}

# Page classes a release was measured to leave in the dump at -d 31 from a kernel
# series on (x86_64 guests of 6.1, 6.12 and 7.2, against the newest Debian
# makedumpfile on the same vmcore: docs/makedumpfile.md; the unit test
# tests/unit/test_makedumpfile_matrix.py derives this table from the stored results).
MEASURED_MISSES: dict[KernelVersion, tuple[tuple[int, int], str]] = {
    (1, 7, 2): ((6, 12), "user"),
    (1, 7, 6): ((6, 12), "free"),
}
_MISSED = {"free": "none of the free pages", "user": "few of the user pages"}

# What `makedumpfile --version` prints, as a string in the binary.
_VERSION_STRING = re.compile(rb"makedumpfile: version (\d+)\.(\d+)\.(\d+)")
_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def dotted(version: KernelVersion) -> str:
    """`(6, 0, 1)` as `6.0.1`.

    >>> dotted((6, 0, 1))
    '6.0.1'
    """
    return ".".join(str(part) for part in version)


def binary_version(binary: bytes) -> KernelVersion | None:
    """The release of a makedumpfile binary, from the string its `--version` prints.

    >>> binary_version(b"\\0makedumpfile: version 1.7.2 (released on 20 Oct 2022)\\0")
    (1, 7, 2)
    >>> binary_version(b"busybox") is None
    True
    """
    found = _VERSION_STRING.search(binary)
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


def kernel_numbers(release: str) -> KernelVersion | None:
    """The three numbers makedumpfile reads from a kernel release string.

    >>> kernel_numbers("6.1.0-57-amd64"), kernel_numbers("7.2.12+deb14-amd64")
    ((6, 1, 0), (7, 2, 12))
    >>> kernel_numbers("7.0-rc1")
    (7, 0, 0)
    """
    found = _RELEASE.match(release)
    if found is None:
        return None
    return int(found[1]), int(found[2]), int(found[3] or 0)


@dataclass(frozen=True)
class CollectorCheck:
    """A capture's makedumpfile against the kernel it will dump."""

    makedumpfile: KernelVersion
    latest_kernel: KernelVersion | None  # None: a release newer than the table
    kernel_release: str

    @property
    def too_old(self) -> bool:
        """Whether makedumpfile will call this kernel unsupported."""
        numbers = kernel_numbers(self.kernel_release)
        return (
            self.latest_kernel is not None
            and numbers is not None
            and (numbers > self.latest_kernel)
        )

    def warning(self) -> str:
        """The one line a build prints when makedumpfile is older than the kernel.

        >>> print(CollectorCheck((1, 7, 2), (6, 0, 1), "6.1.0-57-amd64").warning())
        makedumpfile 1.7.2 is older than kernel 6.1.0-57-amd64: it supports kernels up to 6.0.1 \
and will print "The kernel version is not supported." at dump time; excluded pages and dump \
size may suffer
        """
        latest = dotted(self.latest_kernel) if self.latest_kernel else "?"
        return (
            f"makedumpfile {dotted(self.makedumpfile)} is older than kernel "
            f"{self.kernel_release}: it supports kernels up to {latest} and will print "
            '"The kernel version is not supported." at dump time; excluded pages and dump '
            "size may suffer" + self._measured()
        )

    def _measured(self) -> str:
        """What the measurements of docs/makedumpfile.md say of this pair, if they cover it.

        >>> print(CollectorCheck((1, 7, 6), (6, 11, 4), "6.12.118+deb13-amd64")._measured())
        ; measured on x86_64 6.12 and 7.2, it excludes none of the free pages (docs/makedumpfile.md)
        >>> CollectorCheck((1, 7, 6), (6, 11, 4), "6.11.9-amd64")._measured()
        ''
        """
        miss = MEASURED_MISSES.get(self.makedumpfile)
        numbers = kernel_numbers(self.kernel_release)
        if miss is None or numbers is None or numbers[:2] < miss[0]:
            return ""
        missed = _MISSED[miss[1]]
        return f"; measured on x86_64 6.12 and 7.2, it excludes {missed} (docs/makedumpfile.md)"


def check_collector(members: tuple[Member, ...], kernel_release: str) -> CollectorCheck | None:
    """The initrd's makedumpfile checked against `kernel_release`; None without one."""
    for member in members:
        if member.kind is MemberKind.FILE and member.path.rsplit("/", 1)[-1] == "makedumpfile":
            version = binary_version(member.data)
            if version is not None:
                return CollectorCheck(version, LATEST_KERNEL.get(version), kernel_release)
    return None


def unreadable_kernel(
    check: CollectorCheck, limits: tuple[CollectorLimit, ...], config: dict[str, str]
) -> str | None:
    """Why this makedumpfile cannot read a kernel of `config` at all, or None.

    >>> limit = CollectorLimit((("CONFIG_A", "y"), ("CONFIG_BITS", "52")), None, "A at 52 bits")
    >>> check = CollectorCheck((1, 7, 8), (6, 17, 4), "7.2.12")
    >>> print(unreadable_kernel(check, (limit,), {"CONFIG_A": "y", "CONFIG_BITS": "52"}))
    makedumpfile 1.7.8 cannot read kernel 7.2.12 (A at 52 bits: CONFIG_A=y, CONFIG_BITS=52): \
no makedumpfile release reads it yet
    >>> unreadable_kernel(check, (limit,), {"CONFIG_A": "y", "CONFIG_BITS": "48"}) is None
    True
    >>> later = CollectorLimit(limit.config, (1, 7, 9), limit.what)
    >>> unreadable_kernel(CollectorCheck((1, 7, 9), None, "7.2"), (later,), dict(limit.config))
    """
    for limit in limits:
        if any(config.get(option) != value for option, value in limit.config):
            continue
        if limit.read_from is not None and check.makedumpfile >= limit.read_from:
            continue
        options = ", ".join(f"{option}={value}" for option, value in limit.config)
        needs = (
            "no makedumpfile release reads it yet"
            if limit.read_from is None
            else f"makedumpfile {dotted(limit.read_from)} or newer reads it"
        )
        return (
            f"makedumpfile {dotted(check.makedumpfile)} cannot read kernel "
            f"{check.kernel_release} ({limit.what}: {options}): {needs}"
        )
    return None
