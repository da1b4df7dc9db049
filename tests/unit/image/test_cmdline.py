"""cma=0 from the capture kernel's config, on real Debian kernels of three architectures."""

from __future__ import annotations

from pathlib import Path

from builder.binfmt.kconfig import parse_kernel_config
from builder.image.cmdline import CMA_OFF, config_arguments
from builder.image.pipeline import plan_build
from builder.recipe.parse import load_recipe
from tests.support.paths import REPO
from tests.support.recipes import recipe_text

RECIPES = REPO / "recipes"


def _build_cmdline(tmp_path: Path, recipe: str, changes: dict[str, dict[str, object]]) -> str:
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_text(changes, base=RECIPES / recipe))
    return plan_build(load_recipe(path)).cmdline


def test_arm64_gets_cma_0_from_its_config_not_from_the_recipe(tmp_path: Path) -> None:
    """Debian 12's arm64 kernel: CONFIG_DMA_CMA=y, CONFIG_CMA_SIZE_MBYTES=64."""
    recipe = load_recipe(RECIPES / "qemu-arm64.toml")
    assert not any(word.startswith("cma=") for word in recipe.kernel.cmdline)
    cmdline = _build_cmdline(tmp_path, "qemu-arm64.toml", {})
    # The same line the recipe wrote by hand before (byte-identical outputs).
    assert cmdline == "irqpoll nr_cpus=1 reset_devices panic=10 cma=0 console=ttyAMA0 rdinit=/init"


def test_a_recipe_cma_value_is_kept(tmp_path: Path) -> None:
    changes: dict[str, dict[str, object]] = {"kernel": {"cmdline_append": ["cma=16M"]}}
    cmdline = _build_cmdline(tmp_path, "qemu-arm64.toml", changes)
    assert CMA_OFF not in cmdline.split() and "cma=16M" in cmdline.split()


def test_kernels_without_a_default_cma_area_get_nothing(tmp_path: Path) -> None:
    """Debian 12 amd64 (no CMA), Debian 13 riscv64 (no CMA), Debian 14 amd64 (CMA, size 0)."""
    cases: tuple[tuple[str, dict[str, dict[str, object]]], ...] = (
        ("qemu-x86_64.toml", {}),
        ("qemu-riscv64.toml", {}),
        ("qemu-x86_64-trixie.toml", {"source": {"release": "forky"}}),
    )
    for recipe, changes in cases:
        cmdline = _build_cmdline(tmp_path, recipe, changes)
        assert not any(word.startswith("cma=") for word in cmdline.split()), (recipe, cmdline)


def test_a_device_tree_cma_pool_is_turned_off_whatever_the_configured_size() -> None:
    """A board kernel (CMA size 0 in its config) whose device tree may name the default
    pool: `cma=0` makes the kernel skip that node (kernel/dma/contiguous.c)."""
    config = parse_kernel_config(
        "CONFIG_CMA=y\nCONFIG_DMA_CMA=y\nCONFIG_CMA_SIZE_MBYTES=0\n"
        "CONFIG_CMA_SIZE_SEL_MBYTES=y\nCONFIG_OF_RESERVED_MEM=y\n"
    )
    assert config_arguments(config, ["irqpoll"]) == [CMA_OFF]
    no_device_tree = {name: value for name, value in config.items() if "OF_" not in name}
    assert config_arguments(no_device_tree, ["irqpoll"]) == []
    assert config_arguments(config, ["cma=32M"]) == []  # the recipe's own value stays
