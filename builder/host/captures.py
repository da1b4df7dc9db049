"""One capture per installed kernel in /var/lib/kdump-build/<version>/, and what each
was built from (`host.json`), so the service rebuilds only when that changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from builder.atomic import is_our_output, remove_tree
from builder.errors import OutputError
from builder.host.paths import HostPaths

if TYPE_CHECKING:
    from builder.image.pipeline import BuildResult
    from builder.recipe.model import Recipe

RECORD = "host.json"


@dataclass(frozen=True)
class Inputs:
    """What a capture is built from, compared at every boot: cheap to read (the recipe's
    digest, the kernel image's size and time, the builder's version and /init)."""

    recipe: str
    recipe_sha256: str
    kernel_image: str
    kernel_size: int
    kernel_mtime_ns: int
    builder: str


@dataclass(frozen=True)
class BuildRecord:
    """A capture's `host.json`: its inputs and its needs on this machine."""

    inputs: Inputs
    kernel_version: str
    ram: int
    needed: int | None
    recommended: str | None
    # The same need as a fixed part plus `crashkernel=,cma` ("72M 48M,cma"), where the
    # kernel reserves it; `crashkernel --cma` applies it.
    recommended_cma: str | None = None

    def to_json(self) -> dict[str, object]:
        split = {} if self.recommended_cma is None else {"recommended_cma": self.recommended_cma}
        return {
            "inputs": asdict(self.inputs),
            "kernel_version": self.kernel_version,
            "ram": self.ram,
            "needed": self.needed,
            "recommended": self.recommended,
            **split,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> BuildRecord:
        inputs = data["inputs"]
        assert isinstance(inputs, dict)
        needed, recommended = data.get("needed"), data.get("recommended")
        split = data.get("recommended_cma")
        return cls(
            Inputs(**inputs),
            str(data["kernel_version"]),
            int(str(data["ram"])),
            None if needed is None else int(str(needed)),
            None if recommended is None else str(recommended),
            None if split is None else str(split),
        )


def builder_version() -> str:
    """kdump-build's version and its /init's digest: a new /init means a new capture."""
    # Imported here: status reads records without importlib.metadata's ~10 ms.
    from importlib.metadata import PackageNotFoundError, version

    from builder.image import runtime

    try:
        number = version("kdump-build")
    except PackageNotFoundError:
        number = "source"
    return f"{number}+init.{hashlib.sha256(runtime.init_script()).hexdigest()[:12]}"


def current_inputs(recipe_path: Path, image: Path) -> Inputs:
    """The inputs as they are now (OSError when the recipe or image is unreadable)."""
    status = image.stat()
    digest = hashlib.sha256(recipe_path.read_bytes()).hexdigest()
    return Inputs(str(recipe_path), digest, str(image), status.st_size, status.st_mtime_ns,
                  builder_version())  # fmt: skip


def read_record(capture: Path) -> BuildRecord | None:
    try:
        return BuildRecord.from_json(json.loads((capture / RECORD).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return None


def staleness(capture: Path, inputs: Inputs) -> str | None:
    """Why the capture must be rebuilt, or None when it was built from `inputs`."""
    record = read_record(capture)
    if not (capture / "vmlinuz").is_file() or record is None:
        return "no capture was built for this kernel"
    built = record.inputs
    if built.recipe != inputs.recipe or built.recipe_sha256 != inputs.recipe_sha256:
        return f"the recipe {inputs.recipe} changed"
    if (built.kernel_image, built.kernel_size, built.kernel_mtime_ns) != (
        inputs.kernel_image, inputs.kernel_size, inputs.kernel_mtime_ns,
    ):  # fmt: skip
        return f"the kernel {inputs.kernel_image} changed"
    if built.builder != inputs.builder:
        return f"kdump-build changed ({built.builder} -> {inputs.builder})"
    return None


def build_capture(
    recipe: Recipe,
    kernel_version: str,
    paths: HostPaths,
    ram: int,
    image: Path | None = None,
    *,
    tree: bool = False,
) -> BuildRecord:
    """Build `kernel_version`'s capture into its directory, with its record, atomically.

    `tree`: paths.root is an unbooted tree (`enable --root`); the record names the recipe
    and the kernel as that system will see them once booted, so its first boot finds the
    capture current."""
    # Imported here: `status` and the boot service read records without the build's weight.
    # At start-up, builder.image.pipeline would cost ~832 ms.
    from builder.crashkernel.fit import fit_recipe
    from builder.crashkernel.profile import capture_profile
    from builder.errors import ReachError
    from builder.host.recipe import for_kernel
    from builder.image.outputs import write_outputs
    from builder.image.pipeline import Steps, plan_build

    kernel_image = image or paths.kernel_image(kernel_version)
    inputs = current_inputs(recipe.path, kernel_image)
    guest_path = "/" + str(kernel_image.relative_to(paths.root))
    if tree:
        inputs = replace(inputs, recipe="/" + str(recipe.path.relative_to(paths.root)),
                         kernel_image=guest_path)  # fmt: skip
    result = plan_build(for_kernel(recipe, kernel_version, guest_path), Steps())
    # The same refusal as `build`'s, before anything is written: a capture that could not
    # dump would be loaded at every boot and fail at the crash. The recipe named is the
    # one enable wrote (or was given), the file the admin edits.
    if result.gaps:
        raise ReachError([f"{recipe.path}: {gap}" for gap in result.gaps])
    profile = capture_profile(
        result.recipe, result.kernel, result.cmdline, result.members, result.initrd
    )
    report = fit_recipe(result.recipe, profile, rams=[ram])
    row = report.rows[0]
    record = BuildRecord(inputs, result.kernel_version, ram, row.needed, report.recommended,
                         report.recommended_cma)  # fmt: skip
    text = json.dumps(record.to_json(), indent=2) + "\n"
    if tree:
        result = _origins_as_booted(result, paths.root)
    write_outputs(result, paths.capture(kernel_version), {RECORD: text.encode()})
    return record


def _origins_as_booted(result: BuildResult, root: Path) -> BuildResult:
    """The manifest's member origins as the booted tree names them: where the build host
    keeps the tree is not the capture's business (and would change its bytes)."""
    prefix = str(root).rstrip("/") + "/"

    def booted(origin: str) -> str:
        return "/" + origin.removeprefix(prefix) if origin.startswith(prefix) else origin

    members = tuple(replace(member, origin=booted(member.origin)) for member in result.members)
    return replace(result, members=members)


def built_versions(paths: HostPaths) -> list[str]:
    """Kernel versions with a capture of ours."""
    if not paths.captures.is_dir():
        return []
    return sorted(entry.name for entry in paths.captures.iterdir()
                  if not entry.name.startswith(".") and is_our_output(entry))  # fmt: skip


def remove_capture(paths: HostPaths, kernel_version: str) -> bool:
    """Remove that kernel's capture if kdump-build wrote it; True when removed."""
    capture = paths.capture(kernel_version)
    if not is_our_output(capture):
        return False
    try:
        remove_tree(capture)  # by descriptor, never following a symlink
    except OSError as error:
        raise OutputError(f"{capture}: cannot remove it ({error.strerror})") from None
    return True


def remove_capture_store(paths: HostPaths) -> None:
    """/var/lib/kdump-build itself, once it holds no capture (and nothing else but the
    order in which the boot service met the dumps, which goes with it)."""
    if not built_versions(paths):
        with contextlib.suppress(OSError):
            paths.dumps_seen.unlink()
    with contextlib.suppress(OSError):
        os.rmdir(paths.captures)
