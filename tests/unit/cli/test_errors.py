"""Every input a user hands the command line, empty, cut short or in the way: one line,
the right exit code, nothing written.

Each case runs the real command line in a fresh interpreter on a copy of a
real build (the default recipe's), damaged one file at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support import kills
from tests.support.paths import DATA, DEFAULT_RECIPE, REPO

SYSFS = DATA / "sysfs" / "qemu-1g-crashkernel-192m"
IOMEM = SYSFS / "proc" / "iomem"


def one_line(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("kdump-build: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("errors") / "build"
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(outdir), "-q")
    assert result.returncode == 0, result.stderr
    return outdir


def _damaged_copy(build: Path, tmp_path: Path, name: str, how: str) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(build, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(b"" if how == "empty" else data[: len(data) // 3])
    return copy


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("vmlinuz", "vmlinuz: "),
        ("initrd.img", "initrd.img: "),
        ("manifest.json", "manifest.json: "),
        ("cmdline.txt", "cmdline.txt: "),
    ],
)
def test_layout_of_a_damaged_build_is_refused(
    build: Path, tmp_path: Path, name: str, fragment: str, how: str
) -> None:
    copy = _damaged_copy(build, tmp_path, name, how)
    before = kills.tree_digest(copy)
    result = run_cli("layout", str(copy), "--iomem", str(IOMEM), "--sysfs", str(SYSFS))
    message = one_line(result, 2, fragment)
    if how == "empty":
        assert "empty file" in message
    assert kills.tree_digest(copy) == before  # no layout.json, no segments/


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize(
    "relative",
    [
        "proc/iomem",
        "proc/kcore",
        "sys/kernel/vmcoreinfo",
        "sys/devices/system/cpu/possible",
        "sys/devices/system/cpu/cpu0/crash_notes",
    ],
)
def test_layout_with_damaged_machine_facts_is_refused(
    build: Path, tmp_path: Path, relative: str, how: str
) -> None:
    sysfs = tmp_path / "sysfs"
    shutil.copytree(SYSFS, sysfs)
    data = (sysfs / relative).read_bytes()
    cut = b"" if how == "empty" else data[: max(1, len(data) // 3)]
    if relative.endswith("possible") and how == "truncated":
        cut = b"0-"  # "0" alone is a valid CPU list
    if relative.endswith("crash_notes") and how == "truncated":
        cut = b"zz"
    (sysfs / relative).write_bytes(cut)
    copy = tmp_path / "out"
    shutil.copytree(build, copy)
    before = kills.tree_digest(copy)
    result = run_cli("layout", str(copy), "--iomem", str(sysfs / "proc/iomem"),
                     "--sysfs", str(sysfs))  # fmt: skip
    one_line(result, 2, str(sysfs / relative) if relative != "proc/iomem" else "iomem")
    assert kills.tree_digest(copy) == before


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_inspect_and_diff_of_a_damaged_initrd(build: Path, tmp_path: Path, how: str) -> None:
    copy = _damaged_copy(build, tmp_path, "initrd.img", how)
    damaged = str(copy / "initrd.img")
    one_line(run_cli("inspect", damaged), 2, damaged)
    one_line(run_cli("diff", damaged, str(build / "initrd.img")), 2, damaged)
    one_line(run_cli("inspect", str(_damaged_copy(build, tmp_path / "k", "vmlinuz", how)
                                    / "vmlinuz")), 2, "vmlinuz")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty recipe"),
        ("# only a comment\n", "empty recipe"),
        ('name = "x"\n[dump', "not valid TOML"),
        ('name = "x"\n[dump]\ndevice = "LAB', "not valid TOML"),
    ],
)
def test_empty_or_truncated_recipe(tmp_path: Path, text: str, fragment: str) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(text)
    one_line(run_cli(str(recipe), "-o", str(tmp_path / "out")), 2, str(recipe), fragment)
    one_line(run_cli("fit", str(recipe)), 2, str(recipe), fragment)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["recipe.toml"]


def test_recipe_that_is_not_text_or_not_a_file(tmp_path: Path) -> None:
    binary = tmp_path / "recipe.toml"
    binary.write_bytes(b'name = "x"\n\xff\xfe')
    one_line(run_cli(str(binary)), 2, f"{binary}: byte offset 11: not UTF-8 text")
    one_line(run_cli(str(tmp_path)), 2, f"{tmp_path}: cannot read recipe (Is a directory)")


@pytest.mark.parametrize("how", ["empty", "truncated", "no end marker"])
def test_restore_of_a_damaged_stream_writes_nothing(tmp_path: Path, how: str) -> None:
    from builder.binfmt.flat import flat_block, flat_end, flat_header

    whole = flat_header() + flat_block(0, b"ELF" * 1000) + flat_end()
    stream = {"empty": b"", "truncated": whole[: 4096 + 100], "no end marker": whole[:-16]}[how]
    source = tmp_path / "vmcore.flat"
    source.write_bytes(stream)
    destination = tmp_path / "vmcore"
    one_line(run_cli("restore", str(source), str(destination)), 2, str(source), "byte offset")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["vmcore.flat"]


def test_output_paths_in_the_way_are_one_line(tmp_path: Path, build: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    one_line(run_cli(str(DEFAULT_RECIPE), "-o", str(blocker / "sub" / "out")), 2,
             f"{blocker}: is not a directory")  # fmt: skip
    one_line(run_cli("restore", str(build / "initrd.img"), str(tmp_path / "no" / "vmcore")), 2,
             f"{tmp_path / 'no'}: cannot write there (No such file or directory)")  # fmt: skip
    assert blocker.read_text() == "mine"


def test_a_broken_installation_is_an_internal_error(tmp_path: Path) -> None:
    """An OSError on one of kdump-build's own files exits 1 and says so; a user's path, 2."""
    installed = tmp_path / "site"
    shutil.copytree(REPO / "builder", installed / "builder",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (installed / "builder" / "image" / "runtime" / "init.sh").unlink()
    environment = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run(
        [sys.executable, "-m", "builder.cli", str(DEFAULT_RECIPE), "-o", str(tmp_path / "out")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    one_line(result, 1, str(installed / "builder" / "image" / "runtime" / "init.sh"),
             "No such file or directory", "a file of kdump-build itself")  # fmt: skip
    assert sorted(path.name for path in tmp_path.iterdir()) == ["site"]


def test_outside_bytes_in_a_message_stay_on_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name from a package or an image may hold a newline or a terminal escape."""
    import builder.cli
    from builder.errors import SourceError

    def hostile() -> None:
        raise SourceError("pkg.deb: member 'a\nb\x1b[2J' is odd")

    monkeypatch.setattr(builder.cli.app, "registered_commands",
                        list(builder.cli.app.registered_commands))  # fmt: skip
    builder.cli.app.command("hostile-for-test")(hostile)
    assert builder.cli.main(["hostile-for-test"]) == 2
    assert capsys.readouterr().err == "kdump-build: error: pkg.deb: member 'a\\nb\\x1b[2J' is odd\n"
