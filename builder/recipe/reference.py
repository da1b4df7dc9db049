"""The recipe reference (docs/recipe.md), generated from the settings table."""

from __future__ import annotations

from enum import Enum

from builder.recipe.dump import TargetKind
from builder.recipe.parsers import REQUIRED, Setting
from builder.recipe.settings import SECTIONS
from builder.targets import SETTINGS, target_kinds

_HEADER = [
    "# Recipe reference",
    "",
    "Generated from the settings table (`builder/recipe/settings.py` and each dump",
    "target's keys in `builder/targets/`) by `kdump-build recipe-doc`; do not edit.",
    "",
    "A recipe is a TOML file. `name` (top level, default: the file name without",
    "`.toml`) names the build; every other key lives in one of the tables below.",
    "Unknown keys are errors, and so is a key of another dump target than the chosen one.",
]
_TABLE_HEAD = ["| key | type | default | meaning |", "|---|---|---|---|"]


def _default_text(setting: Setting) -> str:
    default = setting.default
    if default is REQUIRED:
        return "required"
    if isinstance(default, tuple):
        return "[" + ", ".join(f'"{item}"' for item in default) + "]"
    if isinstance(default, Enum):
        return f'"{default.value}"'
    if isinstance(default, TargetKind):
        return f'"{default.name}"'
    if isinstance(default, str):
        return f'"{default}"'
    return str(default)


def _cell(text: str) -> str:
    r"""A table cell's text: a `|` (choice lists, inside code spans too) is escaped, as
    GitHub-flavoured Markdown reads it, so it cannot end the cell.

    >>> _cell("reuse | dedicated")
    'reuse \\| dedicated'
    """
    return " ".join(text.split()).replace("|", "\\|")


def _row(setting: Setting) -> str:
    cells = (f"`{setting.field}`", (setting.parse.__doc__ or "").strip(),
             f"`{_default_text(setting)}`", setting.help)  # fmt: skip
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def reference_markdown() -> str:
    """The recipe reference as Markdown.

    >>> text = reference_markdown()
    >>> text.startswith("# Recipe reference"), '### dump.target = "nfs"' in text
    (True, True)
    """
    lines = list(_HEADER)
    for section in SECTIONS:
        lines += ["", f"## [{section}]", "", *_TABLE_HEAD]
        lines += [_row(setting) for setting in SETTINGS if setting.section == section]
        if section == "dump":
            for target in target_kinds():
                lines += ["", f'### dump.target = "{target.name}"', "",
                          f"{target.summary.capitalize()}.", "", *_TABLE_HEAD]  # fmt: skip
                lines += [_row(setting) for setting in target.settings]
    return "\n".join(lines) + "\n"
