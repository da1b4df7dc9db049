"""Shared fixtures: real Debian packages, fetched once per session and cached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder.image.fetch import FetchedPackage, fetch_packages
from builder.image.packages import PackageRoot
from builder.image.pipeline import BuildResult, plan_build
from builder.recipe.model import Recipe
from builder.recipe.parse import load_recipe
from tests.support.paths import DEFAULT_RECIPE, REPO


@pytest.fixture(scope="session")
def default_recipe() -> Recipe:
    return load_recipe(DEFAULT_RECIPE)


@pytest.fixture(scope="session")
def default_packages(default_recipe: Recipe) -> list[FetchedPackage]:
    return fetch_packages(default_recipe.source.packages, default_recipe.target.arch)


@pytest.fixture(scope="session")
def default_root(default_packages: list[FetchedPackage]) -> PackageRoot:
    return PackageRoot([package.path for package in default_packages])


@pytest.fixture(scope="session")
def default_build(default_recipe: Recipe) -> BuildResult:
    return plan_build(default_recipe)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        check=False,
    )
