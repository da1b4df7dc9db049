"""Issue 25: a missing library names the Debian package that provides it, confirmed in
the private apt state (real Debian packages, cached), never guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import MissingLibraryError
from builder.image.fetch import FetchedPackage
from builder.image.pipeline import plan_build
from builder.image.providers import provider_line
from builder.recipe.model import Recipe
from builder.recipe.parse import load_recipe
from tests.support.recipes import write_recipe

pytestmark = pytest.mark.network


def test_a_missing_library_names_the_package_to_add(
    tmp_path: Path, default_recipe: Recipe, default_packages: list[FetchedPackage]
) -> None:
    # makedumpfile as a package file: nothing resolves its libraries, and the recipe
    # lists every one but liblzo2-2.
    (makedumpfile,) = [package.path for package in default_packages
                       if package.name == "makedumpfile"]  # fmt: skip
    names = [name for name in default_recipe.source.packages
             if name not in ("makedumpfile", "liblzo2-2")]  # fmt: skip
    assert len(names) == len(default_recipe.source.packages) - 2
    path = write_recipe(
        tmp_path / "r.toml",
        {"source": {"packages": names, "package_files": [str(makedumpfile)]}},
    )
    with pytest.raises(MissingLibraryError) as missing:
        plan_build(load_recipe(path))
    line = str(missing.value)
    assert "\n" not in line
    assert line.startswith(
        f"{path}: initrd.binaries: liblzo2.so.2, needed by /usr/bin/makedumpfile "
        "(for /usr/bin/makedumpfile), is not in "
    )
    assert line.endswith(
        ": add liblzo2-2 to source.packages (it holds /lib/x86_64-linux-gnu/liblzo2.so.2)"
    )


def test_a_library_without_a_confirmed_package_says_so(default_recipe: Recipe) -> None:
    # Debian's libz.so.1 is in zlib1g, not in the libz1 its soname would give.
    assert provider_line(default_recipe, "libz.so.1") == (
        "no package found for libz.so.1 (libz1 is not a package for amd64)"
    )
    assert provider_line(default_recipe, "ld-linux-x86-64.so.2") == (
        "no package found for ld-linux-x86-64.so.2 (ld-linux-x86-64-2 is not a package for amd64)"
    )


def test_a_host_or_sysroot_keeps_the_plain_message(tmp_path: Path) -> None:
    # No apt behind a source.root: nothing to confirm a package with.
    path = write_recipe(tmp_path / "r.toml", replace={"source": {"root": str(tmp_path)}})
    assert provider_line(load_recipe(path), "liblzo2.so.2") is None
