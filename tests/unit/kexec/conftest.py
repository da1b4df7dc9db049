"""Fixtures the kexec tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image.outputs import write_outputs
from builder.image.pipeline import BuildResult


@pytest.fixture(scope="module")
def outdir(default_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default recipe's outputs, written once per test module."""
    directory = tmp_path_factory.mktemp("build") / "out"
    write_outputs(default_build, directory)
    return directory
