"""Which recipe this machine is enabled with: /etc/kdump-build/enabled names it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import HostError
from builder.host.managed import is_managed, marker_line, remove_managed, write_managed
from builder.host.paths import HostPaths

if TYPE_CHECKING:
    from builder.recipe.model import Recipe


def enabled_file(paths: HostPaths) -> Path:
    return paths.config_dir / "enabled"


def record_enabled(paths: HostPaths, recipe: Path) -> None:
    write_managed(enabled_file(paths), marker_line() + f"{recipe.absolute()}\n")


def enabled_recipe_path(paths: HostPaths) -> Path | None:
    path = enabled_file(paths)
    if not is_managed(path):
        return None
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return Path(lines[-1]) if lines else None


def enabled_recipe(paths: HostPaths) -> Recipe:
    """The recipe `enable` armed this machine with, or a `HostError` when it was not."""
    path = enabled_recipe_path(paths)
    if path is None:
        raise HostError("kdump-build is not enabled on this machine (run kdump-build enable)")
    # Imported here: at start-up, builder.recipe.parse would cost ~200 ms.
    from builder.recipe.parse import load_recipe  # only when the recipe is needed: not for status

    return load_recipe(path)


def forget_enabled(paths: HostPaths) -> None:
    remove_managed(enabled_file(paths))
