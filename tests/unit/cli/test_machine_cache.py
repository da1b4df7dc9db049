"""enable, disable, boot and the kernel hooks cache in the machine's own directory,
which the package's purge removes (the Debian system VM test checks the purge)."""

from __future__ import annotations

import os

import pytest

from builder.cli import machine
from builder.image.cache import CACHE_ENV, default_cache_dir
from tests.support.paths import REPO


def test_host_commands_use_the_machine_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    machine._use_machine_cache()
    assert str(default_cache_dir()) == "/var/cache/kdump-build"


def test_a_named_cache_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, "/srv/cache")
    machine._use_machine_cache()
    assert os.environ[CACHE_ENV] == "/srv/cache"


def test_the_package_purge_removes_the_machine_cache() -> None:
    postrm = (REPO / "debian" / "postrm").read_text()
    purge = postrm.split('if [ "$1" = purge ]; then', 1)[1].split("\nfi\n", 1)[0]
    removed = f"    rm -rf /etc/kdump-build /var/lib/kdump-build {machine.MACHINE_CACHE}"
    assert removed in purge.splitlines(), purge
