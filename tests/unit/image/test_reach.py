"""A capture that builds but could not dump fails before anything is written, one line
per gap naming the key to fix (issue 25). Real Debian packages: Debian 12's kernel has
ext4, virtio_blk and virtio_pci as modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.recipes import DELETE, write_recipe

pytestmark = pytest.mark.network

GAPS: dict[str, tuple[dict[str, dict[str, object]], str]] = {
    "module": (
        {"initrd": {"modules": ["virtio_pci", "virtio_blk"]}},
        "initrd.modules: ext4 is not in the initrd or built into 6.",
    ),
    "transport": (
        {"initrd": {"modules": ["virtio_blk", "ext4"]}},
        "initrd.modules: virtio_blk finds no device without a virtio transport, and none "
        "(virtio_pci, virtio_mmio) is in the initrd or built into 6.",
    ),
    "block": (
        {"initrd": {"modules": ["ext4"]}},
        "initrd.modules: no block device driver is in the initrd or built into 6.",
    ),
    "console": (
        {"kernel": {"cmdline_append": DELETE}},
        "kernel.cmdline_append: no console=: the capture's messages go nowhere",
    ),
    "panic": (
        {"kernel": {"cmdline": ["irqpoll", "nr_cpus=1", "reset_devices"]}},
        "kernel.cmdline: no panic=: a panic of the capture kernel hangs the machine",
    ),
    # The recipe's own check finds this one, before any package is read.
    "makedumpfile": (
        {"initrd": {"binaries": []}},
        "initrd.binaries: dump.collector is makedumpfile but no makedumpfile is listed",
    ),
}


@pytest.mark.parametrize("lack", sorted(GAPS))
def test_a_capture_that_could_not_dump_fails_naming_the_key(tmp_path: Path, lack: str) -> None:
    changes, line = GAPS[lack]
    recipe = write_recipe(tmp_path / "r.toml", changes)
    out = tmp_path / "out"
    result = run_cli(str(recipe), "-o", str(out))
    assert result.returncode == 2, result.stderr
    (only,) = result.stderr.splitlines()
    assert only.startswith(f"kdump-build: error: {recipe}: {line}"), only
    assert not out.exists(), "nothing written"


def test_every_gap_is_one_line_and_ignore_reach_builds_with_a_warning(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.toml", {
        "kernel": {"cmdline": ["irqpoll"], "cmdline_append": []},
        "initrd": {"modules": []},
    })  # fmt: skip
    result = run_cli(str(recipe), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    keys = [line.split(": ")[3] for line in result.stderr.splitlines()]
    assert keys == ["kernel.cmdline_append", "kernel.cmdline", "initrd.modules", "initrd.modules"]
    forced = run_cli(str(recipe), "-o", str(tmp_path / "out"), "--ignore-reach")
    assert forced.returncode == 0, forced.stderr
    reach = "kdump-build: warning: --ignore-reach: the capture could not dump: "
    warnings = [line for line in forced.stderr.splitlines() if line.startswith(reach)]
    others = [line for line in forced.stderr.splitlines() if not line.startswith(reach)]
    assert len(warnings) == 4, forced.stderr
    # The one other line is the collector's age (builder.image.makedumpfile), not a gap.
    assert [line.split(" is older than ")[0] for line in others] == [
        "kdump-build: warning: makedumpfile 1.7.2"
    ], forced.stderr
    assert (tmp_path / "out" / "initrd.img").is_file()
