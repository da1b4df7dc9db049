"""Find the capture kernel in the source root and check it can do the job.

The effects around `builder.image.capture` (which decides, from data only):
find the recipe's kernel image by its glob, parse it, read its config, and
hand both to `plan_capture_kernel` with the reservation's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.binfmt.kconfig import parse_kernel_config
from builder.binfmt.kernelimg import KernelImage, parse_kernel_image
from builder.crashkernel_syntax import RangesSpec, SimpleSpec, parse_crashkernel_args
from builder.errors import RecipeError
from builder.image.capture import CapturePlan, plan_capture_kernel
from builder.image.layouts import config_candidates, fallback_places, find_config, find_images
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
    dumped_version: str  # the main kernel's: the one whose memory the dump holds
    config: dict[str, str]  # the capture kernel's config ({} when the source has none)


def find_kernel(
    recipe: Recipe, root: Root, key: str, pattern: str
) -> tuple[str, bytes, KernelImage]:
    """The one file `pattern` matches in `root`, parsed; `key` names the recipe key in errors."""
    matches = find_images(root, pattern)
    if len(matches) != 1:
        found = ", ".join(matches) if matches else "nothing"
        places = fallback_places(pattern)
        also = f" (nor in {' or '.join(places)})" if places and not matches else ""
        raise RecipeError(
            f"{recipe.path}: {key}: {pattern!r} must match exactly one file in "
            f"{root.description}, found {found}{also}"
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
    config_path = find_config(root, image.version)
    config_text = (
        None if config_path is None else root.read_bytes(config_path).decode(errors="replace")
    )
    plan = _capture_plan(
        recipe, main, dedicated, config_text, config_path or config_candidates(image.version)[0]
    )
    config = parse_kernel_config(config_text) if config_text is not None else {}
    dumped = main.version or image.version
    return CaptureKernel(path, data, image, image.version, plan, dumped, config)


def _capture_plan(
    recipe: Recipe,
    main: KernelImage,
    dedicated: KernelImage | None,
    config_text: str | None,
    config_name: str,
) -> CapturePlan:
    config = parse_crashkernel_args(recipe.crashkernel.reserve, where="crashkernel.reserve")
    # The fixed region (plain, else ,high) is where the capture kernel is loaded; a
    # `,cma` part only adds RAM it runs in.
    spec = config.main or config.high or config.low or config.cma
    if spec is None:
        raise RecipeError(f"{recipe.path}: crashkernel.reserve: no crashkernel= value")
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
        config_name=config_name,
    )
