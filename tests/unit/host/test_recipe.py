"""The recipe enable writes for a machine, and the per-kernel build of any recipe."""

from __future__ import annotations

import json
from pathlib import Path

from builder.host.probe import DumpFilesystem, HostFacts
from builder.host.recipe import for_kernel, host_recipe_text
from builder.recipe.model import ModuleSelection
from builder.recipe.parse import parse_recipe
from builder.targets import target_kind
from builder.units import GiB
from tests.conftest import run_cli
from tests.unit.host.test_dumps import make_dump

FACTS = HostFacts(
    kernels=("6.1.0-57-amd64",),
    ram=2 * GiB - 512 * 1024,
    cpus=2,
    makedumpfile="/usr/bin/makedumpfile",
    busybox="/bin/busybox",
    dump_filesystem=DumpFilesystem("UUID=6b1f0a2e", "ext4", Path("/"), "/var/crash"),
    consoles=("console=ttyS0,115200",),
)


def test_the_host_recipe_parses_to_what_enable_said() -> None:
    text = host_recipe_text(FACTS)
    assert text == host_recipe_text(FACTS), "deterministic"
    recipe = parse_recipe(text, Path("/etc/kdump-build/recipe.toml"))
    assert recipe.source.root == "/" and recipe.initrd.modules is ModuleSelection.AUTO
    assert recipe.dump.target is target_kind("local") and recipe.dump.keep == 3
    assert recipe.dump.to_json()["device"] == "UUID=6b1f0a2e"
    assert recipe.dump.to_json()["path"] == "/var/crash"
    assert recipe.kernel.cmdline_append == ("console=ttyS0,115200",)
    assert recipe.initrd.busybox == "/bin/busybox"
    assert recipe.crashkernel.ram == ("2047M",)


def test_for_kernel_names_one_image() -> None:
    recipe = parse_recipe(host_recipe_text(FACTS), Path("r.toml"))
    assert recipe.kernel.image == "/boot/vmlinuz-*"
    assert (
        for_kernel(recipe, "6.1.0-9-cloud-amd64").kernel.image
        == "/boot/vmlinuz-6.1.0-9-cloud-amd64"
    )
    assert for_kernel(recipe, "6.2", "/usr/lib/modules/6.2/vmlinuz").kernel.image == (
        "/usr/lib/modules/6.2/vmlinuz"
    )


def test_dumps_command_lists_json_and_text(tmp_path: Path) -> None:
    make_dump(tmp_path, "2026-12-01-101500")
    result = run_cli("dumps", "--dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    (dump,) = json.loads(result.stdout)
    assert dump["panic"] == "Kernel panic - not syncing: sysrq triggered crash"
    text = run_cli("dumps", "--dir", str(tmp_path)).stdout
    assert text.startswith("2026-12-01 10:15:00 UTC  6.1.0-57-amd64  ")
    assert "    Kernel panic - not syncing: sysrq triggered crash" in text
    assert run_cli("dumps", "--dir", str(tmp_path / "none")).stdout == "no dumps\n"


def test_crashkernel_takes_one_action() -> None:
    result = run_cli("crashkernel", "--apply", "--remove")
    assert result.returncode == 2
    assert (
        result.stderr == "kdump-build: error: crashkernel: give one of --apply, --remove, --show\n"
    )
