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

# The test files that take longest (seconds of setup + calls in a serial CI run on this
# 2-core machine, its --durations), run first: `./bootstrap test` hands whole files to
# two workers in collection order, so a long file started last would leave one worker
# alone at the end (tests/unit/test_fuzz.py did, in a unit run on two workers).
LONGEST_FIRST = (
    # ~1100 s loaded: 4 QEMU runs (two arming paths, two crashes)
    "tests/vm/test_armed_image.py",
    # ~760 s idle, ~1500 s loaded: the root-on-LVM image's boots (+~950 s building it cold)
    "tests/vm/test_debian_system.py",
    "tests/vm/test_kdump_load.py",  # ~420 s
    # ~230 s: bonds (active-backup, 802.3ad), a bridge (+80 s alone here), a VLAN
    "tests/vm/test_network_links.py",
    "tests/vm/test_riscv64_dump.py",  # ~230 s
    "tests/vm/test_debian14_package.py",  # ~225 s loaded, no QEMU (+~460 s: a cold forky tree)
    "tests/unit/test_fuzz.py",  # ~230 s, all in the worker's own process
    # ~220 s loaded: a machine root, enable --target nfs, then --target ssh, a crash each
    "tests/vm/test_enable_network.py",
    "tests/vm/test_next_kernels.py",  # ~185 s
    "tests/vm/test_dump_targets.py",  # ~180 s
    "tests/vm/test_forky_riscv64.py",  # ~175 s
    "tests/vm/test_storage_targets.py",  # ~130 s
    "tests/vm/test_dhcpv6.py",  # ~115 s loaded: one crash, two NFS attempts by DHCPv6
    "tests/vm/test_capture_faults.py",  # ~125 s
    "tests/vm/test_enable_root.py",  # ~115 s
    "tests/vm/test_arm64_dump.py",  # ~110 s
    "tests/vm/test_firmware.py",  # ~105 s
    "tests/vm/test_raw_identity.py",  # ~85 s with the LUKS volume
    "tests/vm/test_crash_hotplug.py",  # ~70 s
    "tests/vm/test_crashkernel_fit.py",  # ~60 s
    # The longest unit files (a run on two workers, in proportion): 30-60 s each here.
    "tests/unit/image/test_sysroot.py",
    "tests/unit/host/test_enable_root.py",
    "tests/unit/kexec/test_kdump_load.py",
    "tests/unit/test_debian_package.py",
    "tests/unit/binfmt/test_elf.py",
    "tests/unit/cli/test_cli.py",
    "tests/unit/image/test_pipeline.py",
    "tests/unit/image/test_cache.py",
    "tests/unit/binfmt/test_kernelimg.py",
    "tests/unit/image/test_suites.py",
)


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files in LONGEST_FIRST order, then the other VM files, then the rest.

    A stable sort: the tests of one file keep their order, and so does every file not
    named above within its group (so module fixtures and any order inside a file hold).
    """

    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(REPO).as_posix() if item.path.is_relative_to(REPO) else ""
        if path in LONGEST_FIRST:
            return LONGEST_FIRST.index(path)
        return len(LONGEST_FIRST) + (0 if path.startswith("tests/vm/") else 1)

    items.sort(key=rank)
