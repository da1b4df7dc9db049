"""`kdump-build init`: from an empty directory, a recipe per target and architecture that
builds with no edit (issue 25)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.recipe.parse import load_recipe
from builder.targets import target_kinds
from tests.conftest import run_cli

pytestmark = pytest.mark.network

# (--target, --arch, --release): every target for this host's amd64, and the local
# target for the other two architectures (riscv64 is in Debian from 13 on).
CASES = [
    *((kind.name, "amd64", "") for kind in target_kinds()),
    ("local", "arm64", ""),
    ("local", "riscv64", "trixie"),
]


def _init(directory: Path, target: str, arch: str, release: str) -> Path:
    args = [
        "init",
        "--target",
        target,
        "--arch",
        arch,
        *(["--release", release] if release else []),
    ]
    result = run_cli(*args, cwd=directory)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    recipe = directory / f"{target}-{arch}.toml"
    recipe.write_text(result.stdout)
    return recipe


@pytest.mark.parametrize(("target", "arch", "release"), CASES, ids=["-".join(c) for c in CASES])
def test_an_init_recipe_builds_as_it_is(
    tmp_path: Path, target: str, arch: str, release: str
) -> None:
    assert list(tmp_path.iterdir()) == []
    recipe = _init(tmp_path, target, arch, release)
    if target == "ssh":
        # What the recipe's comment says to run first: the key it names.
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "kdump_id_ed25519")], check=True)  # fmt: skip
        # And the server's host key, as ssh-keyscan writes it.
        host_key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        (tmp_path / "kdump_known_hosts").write_text(f"192.168.122.1 ssh-ed25519 {host_key}\n")
    parsed = load_recipe(recipe)
    assert parsed.dump.target.name == target and "panic=10" in parsed.kernel.cmdline
    result = run_cli(str(recipe), "-o", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["fits"] is True
    # cma=0 comes from the capture kernel's config, not from the recipe: Debian's arm64
    # kernel reserves a 64 MiB CMA area by default, its amd64 and 6.12 riscv64 ones none.
    assert not any(word.startswith("cma=") for word in parsed.kernel.cmdline)
    built = (tmp_path / "out" / "cmdline.txt").read_text().split()
    assert ("cma=0" in built) == (arch == "arm64"), built
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    members = {member["path"] for member in manifest["members"]}
    assert {"/init", "/usr/bin/makedumpfile"} <= members
    added = {package["name"]: package.get("library_of") for package in manifest["packages"]}
    assert added["makedumpfile"] is None and "makedumpfile" in added.values()


def test_init_refuses_what_a_recipe_would() -> None:
    result = run_cli("init", "--target", "nsf")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "kdump-build: error: --target: 'nsf' is not one of local, raw, nfs, ssh\n"
    )


def test_init_is_deterministic() -> None:
    first, second = run_cli("init", "--arch", "arm64"), run_cli("init", "--arch", "arm64")
    assert first.stdout == second.stdout and 'arch = "aarch64"' in first.stdout
