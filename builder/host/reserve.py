"""The crashkernel= this machine needs: the largest need of its captures (one per
installed kernel, each judged by the fit model for this machine's RAM)."""

from __future__ import annotations

from dataclasses import dataclass

from builder.crashkernel.live import LiveReservation
from builder.crashkernel_syntax import parse_size
from builder.errors import HostError
from builder.host.captures import BuildRecord, built_versions, read_record
from builder.host.paths import HostPaths
from builder.units import format_mib


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


def machine_need(paths: HostPaths) -> Need:
    """The largest recommendation over this machine's captures."""
    judged = {version: record for version, record in records(paths).items()
              if record.recommended is not None and record.needed is not None}  # fmt: skip
    if not judged:
        raise HostError(
            f"{paths.captures}: no capture with a fit for this machine; run kdump-build enable"
        )

    def size(record: BuildRecord) -> int:
        return parse_size(str(record.recommended), where="host.json: recommended")

    version, record = max(judged.items(), key=lambda item: size(item[1]))
    return Need(str(record.recommended), size(record), record.needed or 0, version, record.ram)


def reservation_verdict(live: LiveReservation, record: BuildRecord | None) -> str:
    """One line: does the running kernel's reservation hold the capture of this kernel?"""
    if live.size == 0:
        return "reservation: none (no crashkernel= on this kernel's command line)"
    if record is None or record.needed is None:
        return f"reservation: {format_mib(live.size)}; no capture with a fit for this kernel"
    margin = live.size - record.needed
    verdict = "fits" if margin >= 0 else "DOES NOT FIT"
    return (
        f"reservation: {format_mib(live.size)}, the capture needs {format_mib(record.needed)}: "
        f"{verdict} ({format_mib(margin)} margin)"
    )
