"""Where the repository, the test data and the C test harnesses are."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
DATA = TESTS / "data"
C_SOURCES = TESTS / "c"
DEFAULT_RECIPE = REPO / "recipes" / "qemu-x86_64.toml"
