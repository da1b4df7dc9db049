"""The fit verdict: a reservation and an estimate per RAM size, and the smallest `crashkernel=`.

`fit` judges a `crashkernel=` value against the capture's estimate for each
RAM size; `recommend` finds the smallest value under which every RAM size
fits; `fit_recipe` does both for a recipe's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from builder.arch import DEFAULT_ARCH, Arch
from builder.crashkernel.model import (
    Calibration,
    CaptureProfile,
    Estimate,
    Term,
    default_calibration,
    estimate,
)
from builder.crashkernel.reservation import Reservation, crash_rules, kernel_series, reservation
from builder.crashkernel_syntax import (
    RAM_ROUNDING,
    CrashkernelConfig,
    CrashkernelSpec,
    RangeEntry,
    as_config,
    command_line_words,
    parse_size,
)
from builder.errors import FitError, RecipeError
from builder.recipe.model import KernelMode, Recipe
from builder.units import MiB, align_up, format_mib, format_size

# What the loader puts in the fixed region beside the kernel and the packed initrd (ELF
# core header, purgatory, boot parameters, command line: well under 1 MiB) plus the
# kernel's load alignment (2 MiB on x86_64): kexec_load takes segments only there.
LOADED_SLACK = 4 * MiB
# The estimate's terms that are kexec segments, so never in a `,cma` range.
LOADED_TERMS = ("kernel", "initrd_compressed")


def loaded_need(estimate: Estimate) -> int:
    """What must lie in the fixed crash region: the segments kexec_load loads there.

    Everything else the capture needs (the unpacked initrd, its run-time memory,
    makedumpfile) can come from a `crashkernel=,cma` range, which the capture kernel
    gets as plain RAM.
    """
    return LOADED_SLACK + sum(term.bytes for term in estimate.terms if term.name in LOADED_TERMS)


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
        if needed is None or self.estimate is None:
            return None
        # The low range feeds swiotlb and DMA; only the main region (and `,cma`) counts.
        loaded = self.reservation.cma == 0 or self.reserved >= loaded_need(self.estimate)
        return self.reserved > 0 and loaded and self.usable >= needed

    @property
    def usable(self) -> int:
        """What the capture kernel runs in: the main region and the `,cma` ranges."""
        return self.reserved + self.reservation.cma

    @property
    def margin(self) -> int | None:
        needed = self.needed
        return None if needed is None else self.usable - needed

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
    arch: Arch
    rows: tuple[FitRow, ...]
    recommended: str | None = None
    notes: tuple[str, ...] = field(default=())
    # The same need as a small fixed part plus `,cma` ("64M 192M,cma"), where it works.
    recommended_cma: str | None = None

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
        return command_line_words(self.spec)

    @property
    def uncalibrated(self) -> tuple[tuple[str, str], ...]:
        """The estimates' terms that no calibration measured, once each: (name, why)."""
        found = (item for row in self.rows if row.estimate for item in row.estimate.uncalibrated)
        return tuple(dict.fromkeys(found))

    def reason(self) -> str:
        """One line: the verdict, naming the largest term when it does not fit, and the
        terms that are priors rather than calibrated."""
        return self._verdict() + "".join(
            f" (uncalibrated: {name})" for name in dict.fromkeys(n for n, _ in self.uncalibrated)
        )

    def _verdict(self) -> str:
        worst = self.worst
        if worst is None or worst.needed is None:
            return f"{self.label}: no estimate, reservation only"
        ram = format_size(worst.ram)
        if worst.fits:
            return (
                f"{self.label} fits every RAM size; tightest {ram}: "
                f"{format_mib(worst.margin or 0)} to spare"
            )
        largest = worst.estimate.largest if worst.estimate else None
        largest_name = largest.name if largest else "?"
        hint = f"; recommended crashkernel={self.recommended}" if self.recommended else ""
        if self.recommended_cma:
            hint += " or " + command_line_words(self.recommended_cma)
        reserved = format_mib(worst.reserved)
        if worst.reservation.cma and worst.estimate:
            reserved += (f" + {format_mib(worst.reservation.cma)} ,cma (the fixed part must "
                         f"hold {format_mib(loaded_need(worst.estimate))})")  # fmt: skip
        return (
            f"{self.label} does not fit on {ram} RAM: needs {format_mib(worst.needed)}, "
            f"reserved {reserved}; largest term {largest_name} "
            f"({format_mib(largest.bytes if largest else 0)}){hint}"
        )

    def check(self) -> None:
        """Raise `FitError` (exit code 3) with `reason` unless every RAM size fits."""
        if self.fits is False:
            raise FitError(self.reason())

    def to_json(self) -> dict[str, object]:
        largest = self.largest_term
        return {
            "crashkernel": self.spec,
            "arch": self.arch.value,
            "fits": self.fits,
            "recommended": self.recommended,
            "recommended_cma": self.recommended_cma,
            "largest_term": largest.to_json() if largest else None,
            "notes": [
                *self.notes,
                *(f"uncalibrated: {name}: {why}" for name, why in self.uncalibrated),
            ],
            "rams": [row.to_json() for row in self.rows],
        }


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
    step: int | None = None,
) -> tuple[str | None, tuple[str, ...]]:
    """The smallest `crashkernel=` that gives every RAM size what ``needed_for`` says.

    One range per distinct RAM size rounded up to 128 MiB, starting there
    (start inclusive) and ending where the next begins; the last is open. Each
    size covers the largest RAM that lands in its range, rounded up to
    ``step`` (default: the calibration's ``recommend_step``); neighbours with
    equal sizes merge, and a single size is written plainly. Returns (None,
    reasons) when some RAM size cannot hold its needs.

    >>> from builder.units import GiB, MiB
    >>> recommend([1 * GiB, 4 * GiB, 64 * GiB], lambda ram: 100 * MiB + ram // 1024)
    ('1G-4G:104M,4G-:168M', ())
    """
    rams = sorted(set(ram_list))
    if not rams:
        return None, ("no RAM size given",)
    step = default_calibration().recommend_step if step is None else step
    if step <= 0:
        raise RecipeError(f"recommendation step must be positive, got {step}")
    starts = sorted({align_up(ram, RAM_ROUNDING) for ram in rams})
    entries: list[RangeEntry] = []
    problems: list[str] = []
    for index, start in enumerate(starts):
        is_last = index + 1 == len(starts)
        # Rounded RAM values are multiples of 128 MiB: the largest in [start, next) is next - 128M.
        top = start if is_last else starts[index + 1] - RAM_ROUNDING
        listed = [ram for ram in rams if align_up(ram, RAM_ROUNDING) == start]
        need = max(needed_for(top), *(needed_for(ram) for ram in listed))
        size = align_up(need, step)
        smallest = min(listed)
        if size >= smallest:
            problems.append(
                f"{format_size(smallest)} RAM cannot hold a capture needing {format_size(size)}"
            )
        end = None if is_last else starts[index + 1]
        entries.append(RangeEntry(start, end, size))
    if problems:
        return None, tuple(problems)
    return _spelled(entries), ()


def recommend_cma(
    ram_list: Iterable[int], estimate_for: Callable[[int], Estimate], step: int
) -> str | None:
    """The smallest fixed `crashkernel=` plus a `,cma` part covering every RAM size.

    The fixed part holds what kexec_load loads (`loaded_need`); the `,cma` size is
    one value (the kernel reads no ranges there), the largest remaining need. None when
    nothing is left for CMA or the two do not fit the smallest RAM.

    >>> from builder.units import GiB
    >>> def need(ram: int) -> Estimate:
    ...     return Estimate((Term("kernel", 40 * MiB, ""), Term("initrd_compressed", 10 * MiB, ""),
    ...                      Term("rest", 100 * MiB + ram // 1024, "")))
    >>> recommend_cma([1 * GiB, 4 * GiB], need, 8 * MiB)
    '56M 104M,cma'
    """
    rams = sorted(set(ram_list))
    if not rams:
        return None
    fixed = align_up(max(loaded_need(estimate_for(ram)) for ram in rams), step)
    cma = align_up(max(estimate_for(ram).total for ram in rams) - fixed, step)
    if cma <= 0 or fixed + cma >= rams[0]:
        return None
    return f"{format_size(fixed)} {format_size(cma)},cma"


def _spelled(entries: list[RangeEntry]) -> str:
    """Ranges as a `crashkernel=` value: equal neighbours merged, a single size plainly."""
    merged: list[RangeEntry] = []
    for entry in entries:
        if merged and merged[-1].size == entry.size:
            merged[-1] = RangeEntry(merged[-1].start, entry.end, entry.size)
        else:
            merged.append(entry)
    if len(merged) == 1:
        return format_size(merged[0].size)
    return ",".join(str(entry) for entry in merged)


def fit(
    spec: str | CrashkernelSpec | CrashkernelConfig | None,
    ram_list: Sequence[int],
    estimate_input: Estimator | None = None,
    *,
    arch: Arch | str = DEFAULT_ARCH,
    calibration: Calibration | None = None,
    low_ram: int | None = None,
    kernel: str | None = None,
) -> FitReport:
    """Judge ``spec`` against each RAM size in ``ram_list``.

    ``estimate_input`` is a `CaptureProfile` (estimated per RAM size with
    ``calibration``, default the one of ``arch`` for ``kernel``'s series, the
    newest without one), a fixed `Estimate`, a
    function RAM -> `Estimate`, or None for a reservation-only report (no
    verdict, no recommendation). ``spec`` None means no `crashkernel=` at
    all: nothing is reserved. ``kernel`` is the release of the kernel that
    reserves (see `reservation`).

    >>> from builder.units import GiB, MiB
    >>> report = fit("256M", [1 * GiB, 4 * GiB],
    ...              Estimate((Term("everything", 200 * MiB, "all of it"),)))
    >>> report.fits, report.recommended, [row.margin // MiB for row in report.rows]
    (True, '200M', [56, 56])
    >>> report.to_json()["rams"][0]["reserved"] // MiB
    256
    """
    if not ram_list:
        raise RecipeError("fit: give at least one RAM size")
    arch_name, rules = crash_rules(arch, kernel)
    if calibration is None:
        # Only a profile is estimated here; the rest needs no measured constants.
        profiled = isinstance(estimate_input, CaptureProfile)
        calibration = default_calibration(arch_name, kernel) if profiled else Calibration()
    config = None if spec is None else as_config(spec)
    estimator = _estimator(estimate_input, calibration)
    rows = []
    for ram in ram_list:
        reserved = reservation(config, ram, arch_name, low_ram=low_ram, kernel=kernel)
        rows.append(FitRow(ram, reserved, estimator(ram) if estimator else None))
    recommended: str | None = None
    split: str | None = None
    notes: tuple[str, ...] = ()
    if estimator is not None:
        recommended, notes = recommend(
            ram_list, lambda ram: estimator(ram).total, step=calibration.recommend_step
        )
        if recommended is not None and rules.supports_cma(kernel_series(kernel)):
            split = recommend_cma(ram_list, estimator, calibration.recommend_step)
    return FitReport(
        None if config is None else str(config).replace("crashkernel=", ""),
        arch_name,
        tuple(rows),
        recommended,
        notes,
        split,
    )


def _check_cma(spec: str | None, recipe: Recipe, kernel: str | None) -> None:
    """A `,cma` part where the kernel or our loaders cannot use it is the user's mistake."""
    if spec is None or as_config(spec).cma is None:
        return
    arch, rules = crash_rules(recipe.target.arch, kernel)
    if not rules.supports_cma(kernel_series(kernel)):
        since = rules.cma_since
        why = (f"needs Linux {since[0]}.{since[1]} or newer on {arch}, not {kernel}" if since
               else f"does not work on {arch}: kdump-build's loaders cannot give its ranges "
               "to the capture kernel there")  # fmt: skip
        raise RecipeError(f"{recipe.path}: crashkernel.reserve: ',cma' {why}")


def ram_sizes(values: Sequence[str], where: str) -> list[int]:
    """Parse RAM sizes (``4G``, ``1536M``); each must be positive.

    >>> ram_sizes(["1G", "64G"], "--ram")
    [1073741824, 68719476736]
    """
    sizes = []
    for index, value in enumerate(values):
        label = where if len(values) == 1 else f"{where} item {index}"
        size = parse_size(value, where=label)
        if size <= 0:
            raise RecipeError(f"{label}: RAM size must be positive, got {value!r}")
        sizes.append(size)
    return sizes


def fit_recipe(
    recipe: Recipe,
    profile: CaptureProfile,
    *,
    spec: str | None = None,
    rams: Sequence[int] | None = None,
    calibration: Calibration | None = None,
    capture_kernel: str | None = None,
) -> FitReport:
    """The recipe's fit: ``spec`` and ``rams`` override crashkernel.reserve and crashkernel.ram.

    ``capture_kernel``: the capture kernel's release. The calibration is the one
    for its series and the recipe's architecture (`default_calibration`); when
    the recipe reuses the main kernel it is also the kernel that reserves (its
    rules may differ by version). A dedicated capture kernel says nothing of
    the main one.
    """
    reuse = recipe.kernel.mode is KernelMode.REUSE
    where = f"{recipe.path}: crashkernel.ram"
    sizes = list(rams) if rams else ram_sizes(recipe.crashkernel.ram, where)
    if calibration is None:
        calibration = default_calibration(recipe.target.arch, capture_kernel)
    chosen = spec if spec is not None else recipe.crashkernel.reserve
    _check_cma(chosen, recipe, capture_kernel if reuse else None)
    return fit(
        chosen,
        sizes,
        profile,
        arch=recipe.target.arch,
        calibration=calibration,
        kernel=capture_kernel if reuse else None,
    )
