"""What `kdump-build status` adds about this machine: its capture for the running kernel,
whether the reservation holds it (with the margin), and what keeps a load from working."""

from __future__ import annotations

import os
from dataclasses import dataclass

from builder.crashkernel.live import read_live_reservation
from builder.errors import KdumpBuildError
from builder.host import captures
from builder.host.paths import HostPaths
from builder.host.readiness import problems, read_readiness, suggested_value
from builder.host.reserve import reservation_verdict
from builder.host.state import enabled_recipe_path


@dataclass(frozen=True)
class HostStatus:
    capture: str
    reservation: str
    problems: tuple[str, ...]

    def lines(self) -> list[str]:
        return [f"capture: {self.capture}", f"reservation: {self.reservation}",
                *(f"not ready: {problem}" for problem in self.problems)]  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {"capture": self.capture, "reservation": self.reservation,
                "problems": list(self.problems)}  # fmt: skip


def _capture_state(paths: HostPaths, version: str) -> str:
    capture = paths.capture(version)
    if not (capture / "vmlinuz").is_file():
        return f"none for {version} ({capture})"
    recipe = enabled_recipe_path(paths)
    image = paths.kernel_image(version)
    if recipe is None or not image.is_file():
        return f"{capture}"
    try:
        reason = captures.staleness(capture, captures.current_inputs(recipe, image))
    except OSError as error:
        reason = f"{error.filename}: {error.strerror}"
    return f"{capture} ({'current' if reason is None else 'stale: ' + reason})"


def host_status(loaded: bool | None, paths: HostPaths | None = None) -> HostStatus:
    paths = paths or HostPaths()
    version = os.uname().release
    capture = paths.capture(version)
    try:
        live = read_live_reservation()
        verdict = reservation_verdict(live, captures.read_record(capture))
    except KdumpBuildError as error:
        verdict = f"unknown ({error})"
    found = () if loaded else tuple(problems(read_readiness(), suggested_value(capture)))
    return HostStatus(_capture_state(paths, version), verdict, found)
