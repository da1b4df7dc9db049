"""Tests for the `layout` and `load` commands (builder/cli/kexec.py) on a real build.

The default recipe's outputs, written once per module (the `outdir` fixture
of this package's conftest.py), planned offline on captured /proc/iomem
samples and sysfs values; every error checked as the one line a user sees.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from builder.image.outputs import write_outputs
from builder.image.pipeline import BuildResult
from tests.conftest import run_cli
from tests.unit.kexec.x86_layout_inputs import (
    IOMEM,
    SAMPLES,
    SYSFS,
    copy_build,
)


def test_cli_layout_offline_is_deterministic(outdir: Path) -> None:
    sample = IOMEM / "qemu-q35-1g-crashkernel-192m.txt"
    first = run_cli("layout", str(outdir), "--iomem", str(sample), "--sysfs", str(SYSFS), "--json")
    assert first.returncode == 0, first.stderr
    second = run_cli("layout", str(outdir), "--iomem", str(sample), "--sysfs", str(SYSFS), "--json")
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert [s["name"] for s in document["segments"]][-1] == "purgatory"
    assert (outdir / "layout.json").exists()
    assert sorted(p.name for p in (outdir / "segments").iterdir()) == sorted(
        Path(s["blob"]).name for s in document["segments"]
    )


def test_cli_layout_without_sysfs_still_plans(outdir: Path) -> None:
    sample = IOMEM / "server-16g-crashkernel-512m-high.txt"
    result = run_cli("layout", str(outdir), "--iomem", str(sample))
    assert result.returncode == 0, result.stderr
    assert "elfcorehdr=" in result.stdout


def test_cli_layout_bad_iomem_is_one_line_and_keeps_old_layout(
    outdir: Path, tmp_path: Path
) -> None:
    good = run_cli(
        "layout", str(outdir), "--iomem", str(IOMEM / "qemu-q35-1g-crashkernel-192m.txt")
    )
    assert good.returncode == 0, good.stderr
    before = (outdir / "layout.json").read_text()
    bad = tmp_path / "iomem"
    bad.write_text("00100000-3fffffff : System RAM\nthis is not iomem\n")
    result = run_cli("layout", str(outdir), "--iomem", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kdump-build: error: {bad}: line 2: not 'start-end : name': 'this is not iomem'"
    ]
    assert (outdir / "layout.json").read_text() == before


def test_cli_layout_without_crash_region(outdir: Path, tmp_path: Path) -> None:
    iomem = tmp_path / "iomem"
    iomem.write_text("00100000-3fffffff : System RAM\n")
    result = run_cli("layout", str(outdir), "--iomem", str(iomem))
    assert result.returncode == 2
    assert "no 'Crash kernel' range" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_layout_missing_outdir(tmp_path: Path) -> None:
    result = run_cli("layout", str(tmp_path / "nope"), "--iomem", str(SAMPLES[0]))
    assert result.returncode == 2
    assert "not a directory" in result.stderr


def test_cli_print_kexec_command(outdir: Path) -> None:
    result = run_cli("load", str(outdir), "--method", "file", "--print-kexec-command")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"kexec -p -s {outdir}/vmlinuz --initrd={outdir}/initrd.img")
    assert "--command-line='irqpoll" in result.stdout


def test_cli_load_bad_method(outdir: Path) -> None:
    result = run_cli("load", str(outdir), "--method", "fast")
    assert result.returncode == 2
    assert "--method: 'fast' is not one of segments, file, auto" in result.stderr


def test_recipe_backup_region_reaches_the_layout(
    default_build: BuildResult, tmp_path: Path
) -> None:
    """kernel.backup_region in the recipe turns the backup segment on; flags still win."""
    forced = dataclasses.replace(
        default_build,
        recipe=dataclasses.replace(
            default_build.recipe,
            kernel=dataclasses.replace(default_build.recipe.kernel, backup_region=True),
        ),
    )
    directory = tmp_path / "out"
    write_outputs(forced, directory)
    assert json.loads((directory / "manifest.json").read_text())["kexec"] == {"backup_region": True}
    sample = str(IOMEM / "qemu-q35-1g-crashkernel-192m.txt")

    def segment_names(*flags: str) -> list[str]:
        result = run_cli("layout", str(directory), "--iomem", sample, "--json", *flags)
        assert result.returncode == 0, result.stderr
        return [segment["name"] for segment in json.loads(result.stdout)["segments"]]

    assert "backup" in segment_names()
    assert "backup" not in segment_names("--no-backup")


def test_layout_takes_the_arch_from_the_manifest(outdir: Path, tmp_path: Path) -> None:
    sample = str(IOMEM / "qemu-q35-1g-crashkernel-192m.txt")
    build = copy_build(outdir, tmp_path / "out")
    result = run_cli("layout", str(build), "--iomem", sample, "--arch", "s390x")
    assert result.returncode == 2
    assert "no crash layout for architecture 's390x'" in result.stderr
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["arch"] = "sparc"
    (build / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("layout", str(build), "--iomem", sample)
    assert result.returncode == 2
    assert "manifest.json: arch: 'sparc' is not one of x86_64" in result.stderr
    del manifest["arch"]
    (build / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("layout", str(build), "--iomem", sample)
    assert result.returncode == 2
    assert "manifest.json: records no architecture (give --arch)" in result.stderr
    result = run_cli("layout", str(build), "--iomem", sample, "--arch", "amd64", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["arch"] == "x86_64"
