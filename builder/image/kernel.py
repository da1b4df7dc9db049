"""Find the capture kernel in the source root and check it can do the job.

The effects around `builder.image.capture` (which decides, from data only):
find the recipe's kernel image by its glob, parse it, read its config, and
hand both to `plan_capture_kernel` with the reservation's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.binfmt.kernelimg import KernelImage, parse_kernel_image
from builder.crashkernel_syntax import RangesSpec, SimpleSpec, parse_crashkernel
from builder.errors import RecipeError
from builder.image.capture import CapturePlan, plan_capture_kernel
from builder.image.sources import Root
from builder.recipe.model import KernelMode, Recipe


@dataclass(frozen=True)
class CaptureKernel:
    """The kernel the capture runs: its file, parsed image, version and placement plan."""

    path: str
    data: bytes
    image: KernelImage
    version: str
    plan: CapturePlan


def find_kernel(
    recipe: Recipe, root: Root, key: str, pattern: str
) -> tuple[str, bytes, KernelImage]:
    """The one file `pattern` matches in `root`, parsed; `key` names the recipe key in errors."""
    matches = root.glob(pattern)
    if len(matches) != 1:
        found = ", ".join(matches) if matches else "nothing"
        raise RecipeError(
            f"{recipe.path}: {key}: {pattern!r} must match exactly one file in "
            f"{root.description}, found {found}"
        )
    data = root.read_bytes(matches[0])
    return matches[0], data, parse_kernel_image(data, matches[0])


def capture_kernel(recipe: Recipe, root: Root) -> CaptureKernel:
    """The main kernel, or the dedicated one, checked against the reservation."""
    path, data, main = find_kernel(recipe, root, "kernel.image", recipe.kernel.image)
    dedicated = None
    if recipe.kernel.mode is KernelMode.DEDICATED:
        path, data, dedicated = find_kernel(
            recipe, root, "kernel.dedicated_image", recipe.kernel.dedicated_image
        )
    image = dedicated or main
    if not image.version:
        raise RecipeError(
            f"{recipe.path}: {recipe.kernel.capture_image_key}: {path} carries no kernel "
            "version string"
        )
    plan = _capture_plan(recipe, root, main, dedicated, image.version)
    return CaptureKernel(path, data, image, image.version, plan)


def _capture_plan(
    recipe: Recipe, root: Root, main: KernelImage, dedicated: KernelImage | None, version: str
) -> CapturePlan:
    config_path = f"/boot/config-{version}"
    config_text = (
        root.read_bytes(config_path).decode(errors="replace") if root.exists(config_path) else None
    )
    spec = parse_crashkernel(recipe.crashkernel.reserve, where="crashkernel.reserve")
    offset = spec.offset if isinstance(spec, SimpleSpec | RangesSpec) else None
    # A range's size depends on the target's RAM; placement needs an upper bound only.
    size = max(e.size for e in spec.entries) if isinstance(spec, RangesSpec) else spec.size
    return plan_capture_kernel(
        main,
        mode=recipe.kernel.mode,
        recipe_file=str(recipe.path),
        reservation_size=size,
        reservation_offset=offset,
        dedicated=dedicated,
        config_text=config_text,
        config_name=config_path,
    )
