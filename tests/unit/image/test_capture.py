"""The capture-kernel decision: reuse vs dedicated, and placement in the reservation."""

from __future__ import annotations

import struct

import pytest

from builder.arch import Arch
from builder.binfmt.kernelimg import KernelImage, parse_kernel_image
from builder.errors import RecipeError
from builder.image.capture import (
    CapturePlan,
    plan_capture_kernel,
)
from builder.recipe.model import KernelMode
from tests.support.kernels import debian_kernel
from tests.support.synthetic import arm64_image, bzimage, elf64, riscv_image

MiB = 1 << 20
GiB = 1 << 30
RECIPE = "recipe.toml"
GOOD_CONFIG = "CONFIG_CRASH_DUMP=y\nCONFIG_PROC_VMCORE=y\nCONFIG_RELOCATABLE=y\n"


def image(data: bytes, name: str = "vmlinuz") -> KernelImage:
    return parse_kernel_image(data, name)


def refused(match: str, **kwargs: object) -> str:
    """Run the planner expecting a one-line RecipeError matching `match`."""
    with pytest.raises(RecipeError, match=match) as caught:
        plan_capture_kernel(**kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{RECIPE}: ")
    assert caught.value.exit_code == 2
    return message


# ---------------------------------------------------------------------------
# Reuse


def test_reuse_debian_amd64_kernel_with_its_config() -> None:
    kernel = debian_kernel("x86_64")
    main = image(kernel.image, kernel.path)
    plan = plan_capture_kernel(
        main,
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
        config_text=kernel.config,
        config_name="/boot/config-x",
    )
    init_size = struct.unpack_from("<I", kernel.image, 0x260)[0]
    pref_address = struct.unpack_from("<Q", kernel.image, 0x258)[0]
    alignment = struct.unpack_from("<I", kernel.image, 0x230)[0]
    assert isinstance(plan, CapturePlan)
    assert plan.mode is KernelMode.REUSE and plan.image_key == "kernel.image"
    assert plan.image is main and plan.arch is Arch.X86_64
    assert (plan.placement.alignment, plan.placement.min_address, plan.memory_size) == (
        alignment,
        pref_address,
        init_size,
    )
    assert plan.placement.fixed_address is None and plan.placement.max_address is None
    assert plan.config_checked
    assert plan.footprint == init_size


def test_reuse_debian_arm64_kernel_at_a_fixed_offset() -> None:
    kernel = debian_kernel("aarch64")
    main = image(kernel.image, kernel.path)
    plan = plan_capture_kernel(
        main,
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=512 * MiB,
        reservation_offset=0x80000000,
        config_text=kernel.config,
    )
    image_size = struct.unpack_from("<Q", kernel.image, 16)[0]
    assert plan.memory_size == image_size and plan.placement.alignment == 2 * MiB
    assert plan.config_checked


def test_reuse_without_config_is_not_checked() -> None:
    plan = plan_capture_kernel(
        image(bzimage()), mode=KernelMode.REUSE, recipe_file=RECIPE, reservation_size=256 * MiB
    )
    assert not plan.config_checked


def test_reuse_of_non_relocatable_image_fails() -> None:
    message = refused(
        r'kernel.mode: "reuse" needs a relocatable kernel, but fixed.bzImage \(bzImage, x86_64\)',
        main=image(bzimage(relocatable=False), "fixed.bzImage"),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
    )
    assert "kernel.dedicated_image" in message


def test_reuse_of_arm64_image_fixed_to_dram_start_fails() -> None:
    refused(
        r"kernel.mode: .*not relocatable",
        main=image(arm64_image(flags=0b0010), "Image"),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
    )


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        (("CONFIG_PROC_VMCORE=y", "# CONFIG_PROC_VMCORE is not set"), "CONFIG_PROC_VMCORE not set"),
        (("CONFIG_CRASH_DUMP=y", ""), "CONFIG_CRASH_DUMP absent"),
        (("CONFIG_RELOCATABLE=y", "CONFIG_RELOCATABLE=m"), "CONFIG_RELOCATABLE=m"),
    ],
)
def test_reuse_with_config_missing_options_fails(edit: tuple[str, str], found: str) -> None:
    kernel = debian_kernel("x86_64")
    assert edit[0] in kernel.config.splitlines()
    config = kernel.config.replace(edit[0] + "\n", edit[1] + "\n")
    message = refused(
        r"kernel.image: .* cannot capture a dump: it needs CONFIG_CRASH_DUMP=y, "
        r"CONFIG_PROC_VMCORE=y, CONFIG_RELOCATABLE=y, but config-6.1 has ",
        main=image(kernel.image, kernel.path),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
        config_text=config,
        config_name="config-6.1",
    )
    assert message.endswith(found)


def test_reuse_of_debian_s390x_config_fails_without_crash_dump() -> None:
    """Debian builds its s390x kernel without CONFIG_CRASH_DUMP: a real refusal."""
    config = debian_kernel("s390x").config
    assert "# CONFIG_CRASH_DUMP is not set" in config.splitlines()
    main = image(elf64(machine=22, big_endian=True, elf_type=3), "vmlinux")
    refused(
        r"but config-s390x has CONFIG_CRASH_DUMP not set, CONFIG_PROC_VMCORE absent$",
        main=main,
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
        config_text=config,
        config_name="config-s390x",
    )


def test_reuse_riscv_without_config_relocatable() -> None:
    config = "CONFIG_CRASH_DUMP=y\nCONFIG_PROC_VMCORE=y\n"
    plan = plan_capture_kernel(
        image(riscv_image(image_size=0x1400000), "Image"),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=128 * MiB,
        config_text=config,
    )
    assert plan.arch is Arch.RISCV64 and plan.config_checked


def test_reuse_with_dedicated_image_set_is_a_contradiction() -> None:
    refused(
        r"kernel.dedicated_image: is set but kernel.mode is \"reuse\"",
        main=image(bzimage()),
        dedicated=image(bzimage()),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
    )


# ---------------------------------------------------------------------------
# Dedicated


def fixed_kernel() -> KernelImage:
    """Non-relocatable: runs at 16 MiB and needs 24 MiB there (0x1000000-0x2800000)."""
    return image(
        bzimage(relocatable=False, pref_address=0x1000000, init_size=0x1800000), "fixed.bzImage"
    )


def test_dedicated_non_relocatable_inside_reservation() -> None:
    plan = plan_capture_kernel(
        image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=fixed_kernel(),
        reservation_size=64 * MiB,
        reservation_offset=0x1000000,
        config_text="CONFIG_CRASH_DUMP=y\nCONFIG_PROC_VMCORE=y\n# CONFIG_RELOCATABLE is not set\n",
    )
    assert plan.mode is KernelMode.DEDICATED and plan.image_key == "kernel.dedicated_image"
    assert plan.placement.fixed_address == 0x1000000 and plan.memory_size == 0x1800000
    assert plan.config_checked


def test_dedicated_outside_reservation_fails_with_both_ranges() -> None:
    message = refused(
        r"kernel.dedicated_image: fixed.bzImage is not relocatable and runs at "
        r"0x1000000-0x2800000 \(24.0 MiB\), outside crashkernel.reserve "
        r"crashkernel=256M@0x20000000 \(0x20000000-0x30000000\)",
        main=image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=fixed_kernel(),
        reservation_size=256 * MiB,
        reservation_offset=0x20000000,
    )
    assert message.startswith("recipe.toml: kernel.dedicated_image: ")


def test_dedicated_overlapping_the_reservation_end_fails() -> None:
    refused(
        r"runs at 0x1000000-0x2800000 .* crashkernel=16M@0x1000000 \(0x1000000-0x2000000\)",
        main=image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=fixed_kernel(),
        reservation_size=16 * MiB,
        reservation_offset=0x1000000,
    )


def test_dedicated_non_relocatable_without_offset_fails() -> None:
    refused(
        r"outside crashkernel.reserve crashkernel=256M \(placed by the kernel\)",
        main=image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=fixed_kernel(),
        reservation_size=256 * MiB,
    )


def test_dedicated_fixed_elf_uses_its_physical_addresses() -> None:
    vmlinux = image(
        elf64(machine=62, segments=((0xFFFFFFFF81000000, 0x1000000, 0x1000, 0x3000000, 0x200000),)),
        "vmlinux",
    )
    assert not vmlinux.placement.relocatable and vmlinux.placement.fixed_address == 0x1000000
    plan = plan_capture_kernel(
        image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=vmlinux,
        reservation_size=128 * MiB,
        reservation_offset=0,
    )
    assert plan.placement.fixed_address == 0x1000000 and plan.memory_size == 0x3000000


def test_dedicated_relocatable_image() -> None:
    plan = plan_capture_kernel(
        image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=image(bzimage(init_size=0x1000000), "small"),
        reservation_size=128 * MiB,
        config_text=GOOD_CONFIG,
    )
    assert plan.placement.fixed_address is None and plan.memory_size == 0x1000000


def test_dedicated_missing_image_fails() -> None:
    refused(
        r'kernel.dedicated_image: missing, but kernel.mode is "dedicated"',
        main=image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
    )


def test_dedicated_other_architecture_fails() -> None:
    refused(
        r"kernel.dedicated_image: Image is aarch64, but the main kernel vmlinuz is x86_64",
        main=image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=image(arm64_image(), "Image"),
        reservation_size=256 * MiB,
    )


def test_dedicated_needs_proc_vmcore_but_not_relocatable() -> None:
    refused(
        r"kernel.dedicated_image: .* needs CONFIG_CRASH_DUMP=y, CONFIG_PROC_VMCORE=y, "
        r"but the kernel config has CONFIG_PROC_VMCORE absent$",
        main=image(bzimage()),
        mode=KernelMode.DEDICATED,
        recipe_file=RECIPE,
        dedicated=fixed_kernel(),
        reservation_size=64 * MiB,
        reservation_offset=0x1000000,
        config_text="CONFIG_CRASH_DUMP=y\n",
    )


# ---------------------------------------------------------------------------
# Placement of relocatable kernels and recipe values


def test_kernel_larger_than_reservation_fails() -> None:
    refused(
        r"crashkernel.reserve: kernel.image vmlinuz needs 0x4000000 bytes \(64.0 MiB\)",
        main=image(bzimage(init_size=64 * MiB)),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=32 * MiB,
    )


def test_relocatable_kernel_below_pref_address_does_not_fit() -> None:
    # pref_address 16 MiB: in [0, 40 MiB) the kernel needs 16..48 MiB.
    refused(
        r"crashkernel.reserve: .* at an address >= 0x1000000 aligned to 0x200000",
        main=image(bzimage(init_size=32 * MiB)),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=40 * MiB,
        reservation_offset=0,
    )


def test_kernel_not_loadable_above_4g() -> None:
    low = image(bzimage(xloadflags=0x1))
    refused(
        r"ending by 0x100000000",
        main=low,
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
        reservation_offset=4 * GiB,
    )
    plan = plan_capture_kernel(
        low,
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
        reservation_offset=GiB,
    )
    assert plan.placement.max_address == 4 * GiB


def test_kernel_without_init_size_fails() -> None:
    refused(
        r"kernel.image: vmlinuz does not say how much memory it needs",
        main=image(bzimage(protocol=0x0206)),
        mode=KernelMode.REUSE,
        recipe_file=RECIPE,
        reservation_size=256 * MiB,
    )
