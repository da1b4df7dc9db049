"""The crashkernel= this machine needs: the largest need of its captures (one per
installed kernel, each judged by the fit model for this machine's RAM)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from builder.crashkernel.live import LiveReservation
from builder.crashkernel_syntax import SimpleSpec, SuffixSpec, parse_crashkernel_args, parse_size
from builder.errors import HostError
from builder.host.captures import BuildRecord, built_versions, read_record
from builder.host.paths import HostPaths
from builder.units import MiB, format_mib, format_size

if TYPE_CHECKING:
    from builder.recipe.model import Recipe


@dataclass(frozen=True)
class Need:
    """The reservation to apply, and the capture that needs the most."""

    value: str
    reserve: int
    needed: int
    kernel_version: str
    ram: int

    @property
    def margin(self) -> int:
        return self.reserve - self.needed


def records(paths: HostPaths) -> dict[str, BuildRecord]:
    found = {}
    for version in built_versions(paths):
        record = read_record(paths.capture(version))
        if record is not None:
            found[version] = record
    return found


def reserved_by(value: str, where: str) -> int:
    """What a recommended value gives the capture: its size, plus a `,cma` part.

    >>> reserved_by("72M 48M,cma", "x") // MiB, reserved_by("104M", "x") // MiB
    (120, 104)
    """
    config = parse_crashkernel_args(value, where=where)
    parts = (config.main, config.cma)
    return sum(part.size for part in parts if isinstance(part, SimpleSpec | SuffixSpec))


def machine_need(paths: HostPaths, *, cma: bool = False) -> Need:
    """The largest recommendation over this machine's captures (with `cma`: their split
    into a fixed part and `crashkernel=,cma`, where every capture's kernel reserves it)."""

    def value(record: BuildRecord) -> str | None:
        return record.recommended_cma if cma else record.recommended

    found = records(paths)
    judged = {version: record for version, record in found.items()
              if value(record) is not None and record.needed is not None}  # fmt: skip
    if cma and found and len(judged) < len(found):
        raise HostError(
            f"{paths.captures}: crashkernel=,cma needs every capture's kernel to reserve it "
            f"(docs/crashkernel.md); not: {', '.join(sorted(set(found) - set(judged)))}"
        )
    if not judged:
        raise HostError(
            f"{paths.captures}: no capture with a fit for this machine; run kdump-build enable"
        )

    def size(record: BuildRecord) -> int:
        return reserved_by(str(value(record)), "host.json: recommended")

    version, record = max(judged.items(), key=lambda item: size(item[1]))
    return Need(str(value(record)), size(record), record.needed or 0, version, record.ram)


def reservation_verdict(live: LiveReservation, record: BuildRecord | None) -> str:
    """Does the running kernel's reservation hold the capture of this kernel? (`status`
    prints it after `reservation: `)"""
    if live.size == 0:
        return "none (no crashkernel= on this kernel's command line)"
    reserved = format_mib(live.size) + (f" + {format_mib(live.cma)} ,cma" if live.cma else "")
    if record is None or record.needed is None:
        return f"{reserved}; no capture with a fit for this kernel"
    margin = live.usable - record.needed
    verdict = "fits" if margin >= 0 else "DOES NOT FIT"
    return (
        f"{reserved}, the capture needs {format_mib(record.needed)}: "
        f"{verdict} ({format_mib(margin)} margin)"
    )


def recipe_need(recipe: Recipe, ram: int) -> Need:
    """What `recipe`'s capture needs on `ram` bytes, planned in memory: nothing is written
    and nothing of this machine changes (`crashkernel --show` before `enable`)."""
    # Imported here: at start-up (status reads this module), builder.image.pipeline
    # would cost ~450 ms (python -X importtime, on a loaded machine).
    from builder.image.pipeline import plan_build

    ram_text = format_size(ram // MiB * MiB)
    judged = replace(recipe, crashkernel=replace(recipe.crashkernel, ram=(ram_text,)))
    result = plan_build(judged)
    row = result.fit.rows[0] if result.fit is not None and result.fit.rows else None
    if result.fit is None or result.fit.recommended is None or row is None or not row.needed:
        raise HostError(f"{recipe.path}: no fit for {ram_text} of RAM (crashkernel.reserve)")
    value = result.fit.recommended
    return Need(value, parse_size(value, where="recommended"), row.needed,
                result.kernel_version, ram)  # fmt: skip
