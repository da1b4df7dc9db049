"""The recipe enable writes for a machine, and the per-kernel build of any recipe."""

from __future__ import annotations

import json
from dataclasses import replace
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
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("dumps", "--dir", str(empty)).stdout == "no dumps\n"
    missing = run_cli("dumps", "--dir", str(tmp_path / "none"))
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == f"kdump-build: error: {tmp_path}/none: --dir: no such directory\n"


def test_crashkernel_takes_one_action() -> None:
    result = run_cli("crashkernel", "--apply", "--remove")
    assert result.returncode == 2
    assert (
        result.stderr == "kdump-build: error: crashkernel: give one of --apply, --remove, --show\n"
    )


def _with_filesystem(mount_point: str, path: str = "/var/crash") -> HostFacts:
    filesystem = DumpFilesystem("UUID=6b1f0a2e", "ext4", Path(mount_point), path)
    return replace(FACTS, dump_filesystem=filesystem)


def test_a_mount_point_cannot_add_keys_to_the_host_recipe() -> None:
    """Issue 24: a mount point with a line break ended the comment it is named in, and
    the next line became a dump.pre hook run as root by the capture."""
    hostile = '/mnt/x\npre = ["/tmp/own.sh"] #'
    text = host_recipe_text(_with_filesystem(hostile))
    recipe = parse_recipe(text, Path("r.toml"))
    assert recipe.dump.pre == ()
    assert len(text.splitlines()) == len(host_recipe_text(FACTS).splitlines())
    assert '# /mnt/x\\npre = ["/tmp/own.sh"] #).' in text


def test_control_characters_in_values_are_escaped_and_parse_back() -> None:
    path = "/var/cr\x01ash\t\x7f\x1b[2J"
    recipe = parse_recipe(host_recipe_text(_with_filesystem("/", path)), Path("r.toml"))
    assert recipe.dump.to_json()["path"] == path


def test_crashkernel_show_computes_from_a_recipe_without_enable(tmp_path: Path) -> None:
    """Issue 25: --show worked only after enable. It now judges a recipe in memory for
    this machine's RAM; the fit command, given the same RAM, recommends the same."""
    from builder.host.probe import machine_ram
    from tests.support.paths import DEFAULT_RECIPE

    shown = run_cli("crashkernel", "--show", "--recipe", str(DEFAULT_RECIPE))
    assert shown.returncode == 0, shown.stderr
    first, ram_line, source = shown.stdout.splitlines()
    ram = f"{machine_ram() // 2**20}M"
    fit = json.loads(run_cli("fit", str(DEFAULT_RECIPE), "--ram", ram, "--json").stdout)
    assert first == f"crashkernel={fit['recommended']}"
    needed = fit["rams"][0]["needed"] / 2**20
    assert ram_line.startswith(f"  RAM {ram[:-1]} MiB; the capture of 6.")
    assert f" needs {needed:.1f} MiB " in ram_line
    assert (
        source == f"  computed from {DEFAULT_RECIPE}; not applied (kdump-build enable applies it)"
    )
    refused = run_cli("crashkernel", "--apply", "--recipe", str(DEFAULT_RECIPE))
    assert refused.returncode == 2
    assert refused.stderr == (
        "kdump-build: error: crashkernel: --recipe goes with --show (enable applies a recipe)\n"
    )
