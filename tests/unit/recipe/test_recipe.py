from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from builder.compression import Compression
from builder.errors import RecipeError
from builder.recipe import model
from builder.recipe.parse import load_recipe, parse_recipe
from builder.recipe.reference import reference_markdown
from builder.recipe.settings import SECTIONS
from builder.targets import SETTINGS, target_kind, target_kinds
from builder.targets.local import LocalOptions
from tests.support.paths import REPO

MINIMAL = '[source]\nroot = "/"\n[dump]\ndevice = "LABEL=kdump"\n'


def parse(text: str) -> object:
    return parse_recipe(text, Path("recipes/x.toml"))


def error_of(text: str) -> str:
    with pytest.raises(RecipeError) as caught:
        parse(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bundled_recipes_parse() -> None:
    found = {}
    for path in sorted((REPO / "recipes").glob("*.toml")):
        recipe = load_recipe(path)
        device = recipe.dump.options.to_json().get("device")
        found[path.name] = (recipe.name, recipe.target.arch.value, recipe.kernel.mode.value,
                            recipe.dump.target.name, device)  # fmt: skip
    assert found == {
        "qemu-arm64.toml": ("qemu-arm64", "aarch64", "reuse", "local", "LABEL=kdump"),
        "qemu-riscv64.toml": ("qemu-riscv64", "riscv64", "reuse", "local", "LABEL=kdump"),
        "qemu-x86_64-dedicated.toml": (
            "qemu-x86_64-dedicated", "x86_64", "dedicated", "local", "LABEL=kdump"),
        "qemu-x86_64-forky.toml": (
            "qemu-x86_64-forky", "x86_64", "reuse", "local", "LABEL=kdump"),
        "qemu-x86_64-trixie.toml": (
            "qemu-x86_64-trixie", "x86_64", "reuse", "local", "LABEL=kdump"),
        "qemu-x86_64.toml": ("qemu-x86_64", "x86_64", "reuse", "local", "LABEL=kdump"),
    }  # fmt: skip


def test_the_name_key_wins_over_the_file_name() -> None:
    # Every bundled recipe's name equals its file's stem, so test_bundled_recipes_parse
    # passes even when the key is ignored: this one tells them apart.
    recipe = parse_recipe('name = "web-01"\n' + MINIMAL, Path("recipes/x.toml"))
    assert recipe.name == "web-01"


def test_defaults_fill_in() -> None:
    recipe = parse_recipe(MINIMAL, Path("r.toml"))
    assert recipe.name == "r"
    assert recipe.initrd.compression is Compression.ZSTD
    assert recipe.kernel.cmdline == ("irqpoll", "nr_cpus=1", "reset_devices", "panic=10")
    assert recipe.dump.target is target_kind("local")
    assert recipe.dump.options == LocalOptions("LABEL=kdump", "ext4", "/")


def test_unknown_key_names_file_and_dotted_key() -> None:
    message = error_of(MINIMAL + "[initrd]\ncompresion = 'zstd'\n")
    assert message.startswith("recipes/x.toml: initrd.compresion: unknown key")


def test_unknown_section() -> None:
    assert error_of(MINIMAL + "[dupm]\nx = 1\n").startswith("recipes/x.toml: dupm: unknown section")


def test_bad_choice_lists_the_choices() -> None:
    message = error_of(MINIMAL + "[initrd]\ncompression = 'zsdt'\n")
    assert message == (
        "recipes/x.toml: initrd.compression: 'zsdt' is not one of zstd, gzip, xz, lz4, none"
    )


def test_wrong_type() -> None:
    message = error_of(MINIMAL + "[initrd]\nmodules = 'ext4'\n")
    assert message == (
        "recipes/x.toml: initrd.modules: expected an array of strings or \"auto\", got 'ext4'"
    )
    message = error_of(MINIMAL.replace('"LABEL=kdump"', "3"))
    assert message == "recipes/x.toml: dump.device: expected a string, got an integer"
    assert "dump.level: expected an integer, got a boolean" in error_of(MINIMAL + "level = true\n")


def test_out_of_range_and_bad_items() -> None:
    assert "dump.level: 32 is not between 0 and 31" in error_of(MINIMAL + "level = 32\n")
    assert "initrd.modules: item 1: 'a b' is not a valid module name" in error_of(
        MINIMAL + "[initrd]\nmodules = ['ext4', 'a b']\n"
    )


def test_toml_syntax_error_keeps_line_and_column() -> None:
    message = error_of("[dump]\ndevice = \n")
    assert message.startswith("recipes/x.toml: ")
    assert "line 2" in message and "column" in message


def test_required_key() -> None:
    assert (
        error_of('[source]\nroot = "/"\n')
        == "recipes/x.toml: dump.device: required when dump.target is local"
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL + "[initrd]\nbinaries = []\n", "initrd.binaries"),
        (MINIMAL + "[kernel]\nmode = 'dedicated'\n", "kernel.dedicated_image"),
        (MINIMAL + "[kernel]\ndedicated_image = '/boot/x'\n", "kernel.dedicated_image"),
        (
            MINIMAL + "[initrd]\ncompression = 'gzip'\ncompression_level = 12\n",
            "initrd.compression_level",
        ),
        (
            '[source]\nroot = "/"\npackages = ["busybox-static"]\n[dump]\ndevice = "LABEL=k"\n',
            "source.root",
        ),
        (MINIMAL.replace('root = "/"', 'root = "/"\nrelease = "trixie"'), "source.release"),
    ],
)
def test_impossible_combinations(text: str, key: str) -> None:
    assert error_of(text).startswith(f"recipes/x.toml: {key}: ")


def test_release_is_a_debian_release_name() -> None:
    text = '[source]\npackages = ["busybox-static"]\nrelease = "{}"\n[dump]\ndevice = "LABEL=k"\n'
    assert parse(text.format("trixie")).source.release == "trixie"  # type: ignore[attr-defined]
    assert parse(text.format("")).source.release == ""  # type: ignore[attr-defined]
    for bad in ("Trixie", "trixie main", "../x", "-o"):
        assert error_of(text.format(bad)).startswith(
            f"recipes/x.toml: source.release: {bad!r} is not a Debian release name"
        )


def test_no_source_at_all() -> None:
    assert error_of('[dump]\ndevice = "LABEL=k"\n').startswith("recipes/x.toml: source: ")


def test_dump_device_forms() -> None:
    assert "dump.device: 'kdump' is not LABEL=" in error_of(MINIMAL.replace("LABEL=kdump", "kdump"))
    assert "dump.device" in error_of(MINIMAL.replace("LABEL=kdump", "LABEL="))
    for device in ("UUID=1234-abcd", "/dev/vdb1", "LABEL=with space"):
        parse(MINIMAL.replace("LABEL=kdump", device))


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


SECTION_TYPES = {
    "target": model.TargetSettings,
    "source": model.SourceSettings,
    "kernel": model.KernelSettings,
    "initrd": model.InitrdSettings,
    "crashkernel": model.CrashkernelSettings,
    "firmware": model.FirmwareSettings,
}


def test_table_matches_dataclasses() -> None:
    assert set(SECTION_TYPES) | {"dump"} == set(SECTIONS)
    for section, cls in SECTION_TYPES.items():
        table_fields = [s.field for s in SETTINGS if s.section == section]
        assert table_fields == [f.name for f in fields(cls)]
    dump_fields = [s.field for s in SETTINGS if s.section == "dump"]
    assert ["target", "options", *dump_fields[1:]] == [f.name for f in fields(model.DumpSettings)]
    for target in target_kinds():
        options = {s.field for s in target.settings}
        assert options, target
        for setting in target.settings:
            assert setting.section == "dump" and setting.key not in {s.key for s in SETTINGS}


def test_to_json_round_trips_values() -> None:
    recipe = parse_recipe(MINIMAL, Path("r.toml"))
    data = recipe.to_json()
    assert data["dump"]["device"] == "LABEL=kdump"
    assert data["kernel"]["cmdline"] == ["irqpoll", "nr_cpus=1", "reset_devices", "panic=10"]


def test_reference_doc_is_current() -> None:
    committed = (REPO / "docs" / "recipe.md").read_text()
    assert committed == reference_markdown(), "run: kdump-build recipe-doc > docs/recipe.md"


def _table_cells(line: str) -> list[str]:
    # GitHub-flavoured Markdown: a cell ends at a `|` not preceded by a backslash.
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def test_reference_doc_is_a_valid_table_of_every_setting() -> None:
    """Issue 25: choice lists (`x86_64 | aarch64 | riscv64`) split their rows, so the
    default and the meaning of 11 keys fell into the wrong columns."""
    rows: dict[str, list[list[str]]] = {}
    for line in (REPO / "docs" / "recipe.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = _table_cells(line)
            assert len(cells) == 4, line
            rows.setdefault(cells[0].strip("`"), []).append(cells)
    settings = list(SETTINGS) + [s for kind in target_kinds() for s in kind.settings]
    for setting in settings:
        kind = (setting.parse.__doc__ or "").strip()
        assert [setting.field, kind, setting.help] in [
            [cells[0].strip("`"), cells[1], cells[3]] for cells in rows[setting.field]
        ], setting.key
    assert any(cells[1] == "x86_64 | aarch64 | riscv64" for cells in rows["arch"])
