"""The capture /init's configuration: recipe strings stay data, never code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.image.runtime import collector_command, render_config
from builder.recipe.parse import parse_recipe
from tests.support.recipes import toml_string

HOSTILE = "x'y\"z $(touch {marker}) `touch {marker}` ; touch {marker}\n touch {marker} \\\\ $HOME"


@pytest.mark.parametrize("shell", [["sh", "-c"], ["bash", "--posix", "-c"]])
def test_hostile_strings_stay_data(tmp_path: Path, shell: list[str]) -> None:
    marker = tmp_path / "pwned"
    hostile = HOSTILE.format(marker=marker)
    text = (
        '[source]\nroot = "/"\n[dump]\n'
        f"device = {toml_string('LABEL=' + hostile)}\n"
        f"fstype = {toml_string(hostile)}\n"
        f"path = {toml_string('/' + hostile)}\n"
    )
    recipe = parse_recipe(text, Path("r.toml"))
    config = tmp_path / "kdump.conf"
    config.write_bytes(render_config(recipe.dump))
    script = f'. {config}; printf "%s|%s|%s" "$KDUMP_DEVICE" "$KDUMP_FSTYPE" "$KDUMP_PATH"'
    result = subprocess.run([*shell, script], capture_output=True, text=True, check=True)
    assert result.stdout == f"LABEL={hostile}|{hostile}|/{hostile}"
    assert not marker.exists()


def test_same_with_busybox_ash(tmp_path: Path, default_root: object) -> None:
    from builder.image.packages import PackageRoot

    assert isinstance(default_root, PackageRoot)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(default_root.read_bytes("/bin/busybox"))
    busybox.chmod(0o755)
    marker = tmp_path / "pwned"
    hostile = HOSTILE.format(marker=marker)
    recipe = parse_recipe(
        f'[source]\nroot = "/"\n[dump]\ndevice = {toml_string("UUID=" + hostile)}\n', Path("r.toml")
    )
    config = tmp_path / "kdump.conf"
    config.write_bytes(render_config(recipe.dump))
    result = subprocess.run(
        [str(busybox), "sh", "-c", f'. {config}; printf "%s" "$KDUMP_DEVICE"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == f"UUID={hostile}"
    assert not marker.exists()


def test_collector_commands() -> None:
    base = '[source]\nroot = "/"\n[dump]\ndevice = "LABEL=k"\n'
    dump = parse_recipe(base + 'level = 1\ncompression = "zlib"\n', Path("r.toml")).dump
    assert collector_command(dump) == [
        "makedumpfile",
        "-c",
        "--message-level",
        "7",
        "-d",
        "1",
        "/proc/vmcore",
    ]
    dump = parse_recipe(base + 'collector = "copy"\n', Path("r.toml")).dump
    assert collector_command(dump) == ["cp", "/proc/vmcore"]
