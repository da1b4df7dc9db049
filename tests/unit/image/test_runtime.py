"""The capture /init's configuration: recipe strings stay data, never code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.image import runtime
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


def _init_function(name: str) -> str:
    """One shell function of the capture's /init, as written there."""
    text = (Path(runtime.__file__).parent / "init.sh").read_text()
    start = text.index(f"\n{name}() {{\n") + 1
    return text[start : text.index("\n}\n", start) + 3]


@pytest.mark.parametrize("status", [0, 3])
def test_collect_logged_keeps_messages_without_progress(
    tmp_path: Path, default_root: object, status: int
) -> None:
    """Under Debian's busybox ash: the messages are kept, progress dropped, status passed on."""
    from builder.image.packages import PackageRoot

    assert isinstance(default_root, PackageRoot)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(default_root.read_bytes("/bin/busybox"))
    busybox.chmod(0o755)
    fake = (
        "collect() {\n"
        "    echo 'The kernel version is not supported.'\n"
        "    printf 'Copying data   : [ 50.0 %%] |\\rCopying data   : [100.0 %%] /\\n' >&2\n"
        "    echo 'makedumpfile Completed.'\n"
        f'    : > "$1"; return {status}\n'
        "}\n"
    )
    script = (
        fake
        + _init_function("collect_logged")
        + (f'collect_logged {tmp_path}/vmcore {tmp_path}/collector.log; echo "status $?"\n')
    )
    result = subprocess.run(
        [str(busybox), "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )
    assert "Copying data" in result.stdout  # the console still sees the progress
    assert result.stdout.endswith(f"status {1 if status else 0}\n")
    assert (tmp_path / "collector.log").read_text() == (
        "The kernel version is not supported.\nmakedumpfile Completed.\n"
    )
