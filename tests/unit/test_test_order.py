"""The order `./bootstrap test` hands test files to its two workers (tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import LONGEST_FIRST
from tests.support.paths import REPO


def test_every_longest_first_file_exists_once() -> None:
    # A renamed or removed file would silently drop back to the end of the run.
    missing = [name for name in LONGEST_FIRST if not (REPO / name).is_file()]
    assert missing == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
