"""The memory a capture needs: a sum of named terms over calibrated constants.

`estimate` turns a `CaptureProfile` (what the capture consists of) into an
`Estimate` for one RAM size. The constants live in `Calibration`; its class
defaults are priors, and `default_calibration(arch, kernel)` lays over them
the values the QEMU calibration in bench/ measured for that architecture and
kernel series (calibration/<arch>-<series>.json, read on first use).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from builder.arch import DEFAULT_ARCH, Arch
from builder.errors import FitError, RecipeError
from builder.recipe.dump import TargetKind
from builder.targets import default_target, target_kind
from builder.units import PAGE_SIZE, GiB, KiB, MiB, format_size


@dataclass(frozen=True)
class Calibration:
    """Constants of the memory model, in bytes.

    The class defaults are priors. `default_calibration()` replaces the ones
    the measurements determine (``kernel_runtime``, ``per_crashed_gib``,
    ``per_cpu``, ``headroom``) with the values bench/calibrate_crashkernel.py
    fitted to real QEMU crash cycles of one kernel series and stored in
    calibration/<arch>-<series>.json.
    A crash cycle only shows the total a capture needs, so the constant terms
    (userspace, makedumpfile's base, the calibrated recipe's dump target) cannot
    be told apart: they keep small priors and ``kernel_runtime`` is fitted as
    the rest, which makes the total right for the calibrated recipe and the
    split approximate.

    A dump target's cost is its own prior (`TargetKind.memory`) unless the
    calibration measured it (the file's ``target_<name>`` constant, such as
    ``target_nfs``). ``measured_targets`` are the targets the calibration's
    crash cycles used: only their term is calibrated.
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
    page_size: int = PAGE_SIZE
    # /init and busybox processes (their files are already counted in the
    # unpacked initrd; this is stacks, heaps and page tables).
    userspace: int = 2 * MiB
    # makedumpfile's heap beyond its bitmaps: page and compression buffers.
    makedumpfile: int = 4 * MiB
    # makedumpfile's calculate_cyclic_buffer_size() caps each bitmap buffer at 4 MiB.
    makedumpfile_bitmap_cap: int = 4 * MiB
    # Room for run-to-run variation and the 8 MiB resolution of the measurement.
    headroom: int = 8 * MiB
    # Sizes in a recommendation are multiples of this (the calibration's search step).
    recommend_step: int = 8 * MiB

    # Measured dump-target costs by target name (a file's ``target_<name>`` constants).
    target_costs: tuple[tuple[str, int], ...] = ()
    measured_targets: frozenset[str] = frozenset()

    @classmethod
    def from_constants(
        cls, constants: Mapping[str, int], measured_targets: frozenset[str] = frozenset()
    ) -> Calibration:
        """The priors with `constants` (a calibration file's names) laid over them.

        >>> cal = Calibration.from_constants({"headroom": 0, "target_nfs": 5 * MiB})
        >>> cal.headroom, cal.target_costs
        (0, (('nfs', 5242880),))
        """
        costs = tuple(sorted((key.removeprefix(TARGET_PREFIX), value)
                             for key, value in constants.items()
                             if key.startswith(TARGET_PREFIX)))  # fmt: skip
        plain = {
            key: value for key, value in constants.items() if not key.startswith(TARGET_PREFIX)
        }
        return replace(cls(), **plain, target_costs=costs, measured_targets=measured_targets)

    def target(self, kind: TargetKind) -> int:
        """The dump target's buffers while it writes: measured, else its prior.

        >>> from builder.targets import target_kind
        >>> Calibration().target(target_kind("nfs")) // MiB
        24
        """
        return dict(self.target_costs).get(kind.name, kind.memory.bytes)

    def calibrated(self, kind: TargetKind) -> bool:
        """Whether this calibration's crash cycles used the target."""
        return kind.name in self.measured_targets


# A calibration file's constant for a dump target's cost: target_<name>.
TARGET_PREFIX = "target_"
# Calibration's own constants (the target costs come as target_<name>).
CONSTANT_NAMES = frozenset(item.name for item in fields(Calibration)) - {
    "target_costs",
    "measured_targets",
}


# One file per architecture and kernel series, <arch>-<major>.<minor>.json, each
# the constants bench/calibrate_crashkernel.py fitted to real crash cycles of that
# kernel, the command that regenerates it, and the measurements themselves.
CALIBRATION_DIR = Path(__file__).with_name("calibration")
_SERIES = re.compile(r"^(\d+)\.(\d+)")
_FILE_NAME = re.compile(r"^(?P<arch>[a-z0-9_]+)-(?P<major>\d+)\.(?P<minor>\d+)\.json$")

Series = tuple[int, int]


def kernel_series(kernel: str) -> Series:
    """The (major, minor) series of a kernel release, which the calibration is chosen by.

    >>> kernel_series("6.1.0-57-amd64"), kernel_series("6.12.118+deb13-cloud-amd64")
    ((6, 1), (6, 12))
    """
    match = _SERIES.match(kernel)
    if match is None:
        raise FitError(f"kernel release {kernel!r}: no major.minor series at its start")
    return int(match.group(1)), int(match.group(2))


def calibrations(directory: Path = CALIBRATION_DIR) -> dict[tuple[str, Series], Path]:
    """Every stored calibration, by (architecture, series), from the file names.

    >>> ("x86_64", (6, 1)) in calibrations(), ("x86_64", (6, 12)) in calibrations()
    (True, True)
    """
    found: dict[tuple[str, Series], Path] = {}
    for path in sorted(directory.glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match is not None:
            series = (int(match["major"]), int(match["minor"]))
            found[(match["arch"], series)] = path
    return found


def calibration_path(
    arch: Arch | str, kernel: str | None, directory: Path = CALIBRATION_DIR
) -> Path:
    """The calibration for `arch` and the kernel's series: that series, else the nearest one
    of the same architecture (the newer on a tie); `kernel` None takes the newest.

    >>> calibration_path("x86_64", "6.1.0-57-amd64").name, calibration_path("x86_64", "6.10.1").name
    ('x86_64-6.1.json', 'x86_64-6.12.json')
    """
    stored = calibrations(directory)
    same_arch = {series: path for (name, series), path in stored.items() if name == str(arch)}
    if not same_arch:
        have = ", ".join(f"{name} {major}.{minor}" for name, (major, minor) in sorted(stored))
        raise FitError(
            f"no crashkernel calibration for {arch} in {directory} (calibrated: "
            f"{have or 'none'}); run bench/calibrate_crashkernel.py for it"
        )
    if kernel is None:
        return same_arch[max(same_arch)]
    wanted = kernel_series(kernel)

    def distance(series: Series) -> tuple[int, int]:
        # Series numbers as one scale (6.12 is 12 minors after 6.0); the newer wins a tie.
        return abs((series[0] - wanted[0]) * 100 + series[1] - wanted[1]), -series[1]

    return same_arch[min(same_arch, key=distance)]


def load_calibration(path: Path) -> Calibration:
    """`Calibration` with the measured constants of ``path`` over the defaults.

    A missing file gives the defaults; a malformed one is an internal error
    (the files ship with the package), reported as `FitError` naming the key.

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
    for key, value in constants.items():
        if key not in CONSTANT_NAMES and not key.startswith(TARGET_PREFIX):
            raise FitError(f"{path}: constants.{key}: not a Calibration field")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FitError(f"{path}: constants.{key}: expected a byte count, got {value!r}")
    return Calibration.from_constants(constants, _measured_targets(record.get("measurements")))


def _measured_targets(measurements: object) -> frozenset[str]:
    """The dump targets of a calibration file's crash cycles."""
    if not isinstance(measurements, list):
        return frozenset()
    return frozenset(str(item["target"]) for item in measurements
                     if isinstance(item, dict) and "target" in item)  # fmt: skip


def default_calibration(arch: Arch | str = DEFAULT_ARCH, kernel: str | None = None) -> Calibration:
    """The calibration the fit uses for a capture kernel: its architecture's file for the
    kernel's series (see `calibration_path`), over the priors, read once, on first use.

    >>> default_calibration() is default_calibration("x86_64", "7.2.12+deb14-amd64")
    True
    """
    return _load_cached(calibration_path(arch, kernel))


@functools.cache
def _load_cached(path: Path) -> Calibration:
    return load_calibration(path)


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
    # Terms whose constant no calibration measured: (term name, why), for the notes.
    uncalibrated: tuple[tuple[str, str], ...] = ()

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
    # The dump target's name (a stored profile keeps the name).
    dump_target: str = field(default_factory=lambda: default_target().name)
    makedumpfile: bool = True
    # The kernel's decompressor while it unpacks the initrd (zstd window, xz dictionary).
    initrd_decompressor_size: int = 0

    def __post_init__(self) -> None:
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
    profile: CaptureProfile, ram_bytes: int, calibration: Calibration | None = None
) -> Estimate:
    """Estimate what capturing a crash of a machine with ``ram_bytes`` of RAM needs.

    The terms are peaks added together (the compressed initrd, say, is freed
    after unpacking), which errs on the large side; calibration absorbs that.
    ``calibration`` defaults to `default_calibration()`.

    >>> profile = CaptureProfile(40 * MiB, 2 * MiB, 6 * MiB, cpus=1, dump_target="raw")
    >>> e = estimate(profile, 1 * GiB)
    >>> [term.name for term in e.terms][:3], e.total > 48 * MiB + default_calibration().headroom
    (['kernel', 'initrd_compressed', 'initrd_unpacked'], True)
    >>> e.uncalibrated[0][1]
    "the raw target's 2M is its prior (a guess: no filesystem, only the block layer's ..."
    """
    cal = default_calibration() if calibration is None else calibration
    terms = [
        *_image_terms(profile),
        *_runtime_terms(profile, ram_bytes, cal),
        *_collector_terms(profile, ram_bytes, cal),
        _target_term(profile, cal),
    ]
    terms.append(_memmap_term(terms, cal))
    # A margin on top of the measured total, not an allocation: outside the memmap term.
    terms.append(
        Term(
            "headroom",
            cal.headroom,
            "margin over the calibrated total for run-to-run variation and the "
            "8 MiB resolution of the measurement",
        )
    )
    return Estimate(tuple(terms), _uncalibrated_target(profile, cal))


def _image_terms(profile: CaptureProfile) -> list[Term]:
    """The loaded capture: kernel at its load address and the initrd, packed and unpacked."""
    return [
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
    ]


def _runtime_terms(profile: CaptureProfile, ram_bytes: int, cal: Calibration) -> list[Term]:
    """The running capture: kernel allocations, per-CPU areas, crashed RAM, /init."""
    return [
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
            math.ceil(ram_bytes / GiB * cal.per_crashed_gib),
            f"describing {format_size(ram_bytes)} of crashed RAM (/proc/vmcore ranges, "
            "ELF headers, old mem_map reads)",
        ),
        Term("userspace", cal.userspace, "/init and busybox processes: stacks, heaps"),
    ]


def _collector_terms(profile: CaptureProfile, ram_bytes: int, cal: Calibration) -> list[Term]:
    """makedumpfile's heap and bitmaps; nothing for a plain copy."""
    if not profile.makedumpfile:
        return []
    pages = ram_bytes // cal.page_size
    # calculate_cyclic_buffer_size(): min(60% free, 4 MiB, max_mapnr * 2 / 8);
    # we count one such buffer per bitmap and ignore the free-memory limit.
    bitmap = min(pages * 2 // 8, cal.makedumpfile_bitmap_cap)
    return [
        Term(
            "makedumpfile",
            cal.makedumpfile + 2 * bitmap,
            f"makedumpfile: {format_size(cal.makedumpfile)} base plus two cyclic bitmap "
            f"buffers of {format_size(bitmap)} each",
        )
    ]


def _target_term(profile: CaptureProfile, cal: Calibration) -> Term:
    try:
        target = target_kind(profile.dump_target)
    except ValueError as error:
        raise FitError(f"capture profile: dump_target: {error}") from None
    return Term(
        "dump_target",
        cal.target(target),
        f"buffers for the {target.name} dump target (page cache, file system or network)",
    )


def _uncalibrated_target(profile: CaptureProfile, cal: Calibration) -> tuple[tuple[str, str], ...]:
    """The dump target's term when the calibration did not measure that target."""
    target = target_kind(profile.dump_target)
    if cal.calibrated(target):
        return ()
    cost = format_size(cal.target(target))
    why = (f"the {target.name} target's {cost} is its prior ({target.memory.basis}), "
           "not measured by this architecture's and kernel's calibration")  # fmt: skip
    return (("dump_target", why),)


def _memmap_term(terms: list[Term], cal: Calibration) -> Term:
    """The reservation pays for its own struct pages and hash tables.

    Solving needed = base + needed * fraction gives the term.
    """
    fraction = cal.struct_page / cal.page_size + cal.hash_per_mib / MiB
    base = sum(term.bytes for term in terms)
    needed = math.ceil(base / (1 - fraction))
    return Term(
        "memmap",
        needed - base,
        f"struct page and hash tables for the reservation itself ({fraction:.2%} of it)",
    )
