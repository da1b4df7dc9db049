"""riscv64 on Debian 14's kernel, loaded with our own loader: crash, dump, read back.

The capture is recipes/qemu-riscv64.toml (Debian 13) with `source.release =
"forky"` and `dump.level = 1` (zero pages only). At the recipe's -d 31,
Debian 14's makedumpfile 1.7.8 (older than 7.2: "The kernel version is not
supported.") saved a dump without the page holding `mem_section`
("readpage_kdump_compressed: pfn(a5c00) is excluded"): neither 1.7.6 nor
1.7.8 could read it back (one boot; which class took it is not known yet).
Debian 14's riscv64 kernel (7.x) is split into
linux-base/-binary/-modules (the image at /usr/lib/modules/VER/vmlinuz), has
no kexec_file_load, reserves a 128 MiB CMA area by default (the capture line
gets cma=0 from its config) and keeps its kexec state in /sys/kernel/kexec/.
It boots as the main kernel under qemu-system-riscv64 (TCG, OpenSBI) with its
own 9p modules, runs `kdump-build load` from the Debian 13 riscv64 guest root
(tests/support/guestroot.py: the loader's userspace does not depend on the
kernel) and is crashed with sysrq. The host reads the vmcore with Debian 13's
riscv64 makedumpfile under qemu-riscv64. One boot serves every test here.

Why not arm64: Debian 14's arm64 kernel has 4K pages with 52-bit VA (5 page
table levels), which no released makedumpfile reads (Debian 14's 1.7.8 stops
with "PAGE SIZE 0x1000 and VA Bits 52 not supported"); the build says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.arch import Arch
from tests.conftest import run_cli
from tests.support import recipes
from tests.support.guestroot import guest_root
from tests.support.paths import REPO
from tests.vm import loader_guest
from tests.vm.loader_guest import LOAD_AND_CRASH, GuestCrash

pytestmark = pytest.mark.vm

RISCV64_RECIPE = REPO / "recipes" / "qemu-riscv64.toml"
RELEASE = "forky"
APPEND = "crashkernel=256M"
CRASH_REGION_KIB = 256 * 1024
FAREWELL = "Bye..."  # arch/riscv/kernel/machine_kexec.c, the crashed kernel's last line


@pytest.fixture(scope="module")
def forky_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The Debian 13 riscv64 recipe with release forky and level 1, built on this host."""
    tmp = tmp_path_factory.mktemp("riscv64-forky")
    recipe = tmp / "recipe.toml"
    # Level 1: what -d 31 lost with 1.7.8 on 7.2 (module docstring) stays in the dump.
    changes: dict[str, dict[str, object]] = {"source": {"release": RELEASE}, "dump": {"level": 1}}
    recipe.write_text(recipes.recipe_text(changes, base=RISCV64_RECIPE))
    outdir = tmp / "out"
    result = run_cli(str(recipe), "-o", str(outdir), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    kernel = str(summary["kernel"])
    assert kernel.startswith("7.") and kernel.endswith("+deb14-riscv64"), kernel
    assert "cma=0" in summary["cmdline"].split()  # CONFIG_CMA_SIZE_MBYTES=128
    return outdir, kernel


@pytest.fixture(scope="module")
def crash(forky_build: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> GuestCrash:
    outdir, kernel = forky_build
    work = tmp_path_factory.mktemp("riscv64-forky-crash")
    # The main side's 9p modules come from Debian 14's kernel packages.
    initrd = work / "main-initrd.img"
    root = guest_root(Arch.RISCV64)
    initrd.write_bytes(loader_guest.loader_initrd(Arch.RISCV64, kernel, root, LOAD_AND_CRASH,
                                                  release=RELEASE))  # fmt: skip
    return loader_guest.crash_cycle(Arch.RISCV64, outdir, kernel, LOAD_AND_CRASH, work,
                                    append=APPEND, timeout=600, main_initrd=initrd)  # fmt: skip


def test_our_segments_are_loaded_on_debian14s_kernel(crash: GuestCrash) -> None:
    """No kexec_file_load in Debian 14's riscv64 kernel: auto takes our segments."""
    loader_guest.check_file_refused(crash.boot.console)
    loader_guest.check_auto_load(crash.boot.console)


def test_capture_kernel_boots_and_saves_the_dump(
    crash: GuestCrash, forky_build: tuple[Path, str]
) -> None:
    outdir, kernel = forky_build
    loader_guest.check_capture_boot(crash.boot.console, outdir, kernel, FAREWELL, CRASH_REGION_KIB)


def test_dump_shows_the_panic_to_makedumpfile(
    crash: GuestCrash, forky_build: tuple[Path, str]
) -> None:
    loader_guest.check_dump(crash, forky_build[1])
