"""The capture-kernel decision as data: reuse the main kernel or use a dedicated one.

`plan_capture_kernel` checks that the chosen kernel can run from the crash
reservation and returns the placement constraints (`CapturePlan`) the
layout step works with. It reads nothing and loads nothing: images and the
kernel config text come in, a plan or a `RecipeError` naming the recipe key
goes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from builder.arch import Arch, arch_info
from builder.binfmt.kconfig import parse_kernel_config
from builder.binfmt.kernelimg import KernelImage, Placement
from builder.errors import RecipeError
from builder.recipe.model import KernelMode
from builder.units import format_mib, format_size

KEY_MODE = "kernel.mode"
KEY_IMAGE = "kernel.image"
KEY_DEDICATED_IMAGE = "kernel.dedicated_image"
KEY_RESERVE = "crashkernel.reserve"

CONFIG_CRASH_DUMP = "CONFIG_CRASH_DUMP"
CONFIG_PROC_VMCORE = "CONFIG_PROC_VMCORE"

# What the capture kernel itself must be built with: CRASH_DUMP lets it boot
# as a capture kernel (elfcorehdr=), PROC_VMCORE gives it /proc/vmcore.
CAPTURE_OPTIONS = (CONFIG_CRASH_DUMP, CONFIG_PROC_VMCORE)


@dataclass(frozen=True)
class CapturePlan:
    """Which kernel the capture runs; where it may go is its image's `placement`.

    `memory_size` is the placement's, checked to be known.
    """

    mode: KernelMode
    image_key: str  # the recipe key the capture kernel came from
    image: KernelImage
    memory_size: int
    config_checked: bool

    @property
    def arch(self) -> Arch:
        return self.image.arch

    @property
    def placement(self) -> Placement:
        """Alignment, lowest and highest address, fixed address, load offset."""
        return self.image.placement

    @property
    def footprint(self) -> int:
        """Bytes the kernel occupies from its aligned base address."""
        return self.placement.load_offset + self.memory_size


def _describe_setting(options: Mapping[str, str], name: str) -> str:
    value = options.get(name)
    if value is None:
        return f"{name} absent"
    if value == "n":
        return f"{name} not set"
    return f"{name}={value}"


def _reservation_text(size: int, offset: int | None) -> str:
    """How the reservation reads in a message: crashkernel=256M@0x20000000 (range)."""
    if offset is None:
        return f"crashkernel={format_size(size)} (placed by the kernel)"
    return f"crashkernel={format_size(size)}@{offset:#x} ({offset:#x}-{offset + size:#x})"


def _check_config(
    recipe_file: str,
    key: str,
    image: KernelImage,
    config_text: str | None,
    config_name: str,
    required: tuple[str, ...],
) -> bool:
    if config_text is None:
        return False
    options = parse_kernel_config(config_text)
    missing = [name for name in required if options.get(name) != "y"]
    if missing:
        found = ", ".join(_describe_setting(options, name) for name in missing)
        wanted = ", ".join(f"{name}=y" for name in required)
        raise RecipeError(
            f"{recipe_file}: {key}: {image.name} cannot capture a dump: it needs {wanted}, "
            f"but {config_name} has {found}"
        )
    return True


def _check_placement(
    recipe_file: str, key: str, image: KernelImage, memory_size: int, size: int, offset: int | None
) -> None:
    """Refuse images that cannot sit inside crashkernel=size[@offset]."""
    reservation = _reservation_text(size, offset)
    placement = image.placement
    footprint = placement.load_offset + memory_size
    if not placement.relocatable:
        if placement.fixed_address is None:
            raise RecipeError(
                f"{recipe_file}: {key}: {image.name} is not relocatable and its {image.format} "
                "header does not say where it must run; use a relocatable capture kernel"
            )
        start = placement.fixed_address
        end = start + footprint
        if offset is None or start < offset or end > offset + size:
            raise RecipeError(
                f"{recipe_file}: {key}: {image.name} is not relocatable and runs at "
                f"{start:#x}-{end:#x} ({format_mib(footprint)}), outside {KEY_RESERVE} "
                f"{reservation}; reserve crashkernel=size@offset covering it"
            )
        return
    if footprint > size:
        raise RecipeError(
            f"{recipe_file}: {KEY_RESERVE}: {key} {image.name} needs {footprint:#x} bytes "
            f"({format_mib(footprint)}) where it is loaded, more than {reservation}"
        )
    if offset is None:
        return
    # The lowest address the kernel may use inside the region, aligned up.
    lowest = max(offset, placement.min_address)
    base = -(-lowest // placement.alignment) * placement.alignment
    highest = placement.max_address
    limit = offset + size if highest is None else min(offset + size, highest)
    if base + footprint > limit:
        raise RecipeError(
            f"{recipe_file}: {KEY_RESERVE}: {key} {image.name} needs {footprint:#x} bytes at an "
            f"address >= {placement.min_address:#x} aligned to {placement.alignment:#x} and ending "
            f"by {limit:#x}, which {reservation} does not offer"
        )


def _reused_kernel(
    recipe_file: str, main: KernelImage, dedicated: KernelImage | None
) -> tuple[str, KernelImage, tuple[str, ...]]:
    """kernel.mode = "reuse": the main image, which must be relocatable."""
    if dedicated is not None:
        raise RecipeError(
            f'{recipe_file}: {KEY_DEDICATED_IMAGE}: is set but {KEY_MODE} is "reuse"; '
            f'remove it or set {KEY_MODE} = "dedicated"'
        )
    if not main.placement.relocatable:
        raise RecipeError(
            f'{recipe_file}: {KEY_MODE}: "reuse" needs a relocatable kernel, but {main.name} '
            f"({main.format}, {main.arch}) is not relocatable; "
            f'set {KEY_MODE} = "dedicated" with {KEY_DEDICATED_IMAGE}'
        )
    return KEY_IMAGE, main, CAPTURE_OPTIONS + arch_info(main.arch).reuse_options


def _dedicated_kernel(
    recipe_file: str, main: KernelImage, dedicated: KernelImage | None
) -> tuple[str, KernelImage, tuple[str, ...]]:
    """kernel.mode = "dedicated": a second image of the main kernel's architecture."""
    if dedicated is None:
        raise RecipeError(
            f'{recipe_file}: {KEY_DEDICATED_IMAGE}: missing, but {KEY_MODE} is "dedicated"'
        )
    if dedicated.arch != main.arch:
        raise RecipeError(
            f"{recipe_file}: {KEY_DEDICATED_IMAGE}: {dedicated.name} is {dedicated.arch}, "
            f"but the main kernel {main.name} is {main.arch}"
        )
    # A dedicated kernel is often built to run at one fixed address, so only
    # the options for reading the dump are asked of it.
    return KEY_DEDICATED_IMAGE, dedicated, CAPTURE_OPTIONS


def plan_capture_kernel(
    main: KernelImage,
    *,
    mode: KernelMode,
    recipe_file: str,
    reservation_size: int,
    reservation_offset: int | None = None,
    dedicated: KernelImage | None = None,
    config_text: str | None = None,
    config_name: str = "the kernel config",
) -> CapturePlan:
    """Decide the capture kernel and its placement constraints, or say why not.

    `config_text` is the `/boot/config-*` of the capture kernel (the main
    kernel when reusing), when the source has one; `recipe_file` is the
    recipe's file name, for messages. tests/unit/image/test_capture.py runs it on real
    Debian kernels and on synthetic images of every format.
    """
    if reservation_size <= 0:
        raise RecipeError(f"{recipe_file}: {KEY_RESERVE}: the reservation size must be positive")
    choose = _reused_kernel if mode is KernelMode.REUSE else _dedicated_kernel
    key, image, required = choose(recipe_file, main, dedicated)
    config_checked = _check_config(recipe_file, key, image, config_text, config_name, required)
    memory_size = image.placement.memory_size
    if memory_size is None:
        raise RecipeError(
            f"{recipe_file}: {key}: {image.name} does not say how much memory it needs "
            f"({image.format} header too old); use a newer kernel"
        )
    _check_placement(recipe_file, key, image, memory_size, reservation_size, reservation_offset)
    return CapturePlan(
        mode=mode,
        image_key=key,
        image=image,
        memory_size=memory_size,
        config_checked=config_checked,
    )
