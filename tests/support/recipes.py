"""Recipes for tests: the bundled default recipe with some keys changed, as TOML text.

Edits go through the TOML document (not string replacement), so a test
states the keys it changes and a reformatted default recipe breaks nothing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.paths import DEFAULT_RECIPE

# A value to delete a key, in `changes`.
DELETE = object()


def toml_string(value: str) -> str:
    """A TOML basic string holding any text."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text of a recipe document: top-level values, then one table per section."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in document.items()
             if not isinstance(value, Mapping)]  # fmt: skip
    for section, table in document.items():
        if isinstance(table, Mapping):
            lines += ["", f"[{section}]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()
                      if not _is_table_array(value)]  # fmt: skip
            for key, value in table.items():
                for item in value if _is_table_array(value) else ():
                    lines += ["", f"[[{section}.{key}]]"]
                    lines += [f"{name} = {_toml_value(inner)}" for name, inner in item.items()]
    return "\n".join(lines) + "\n"


def _is_table_array(value: object) -> bool:
    """An array of tables (`[[dump.fallback]]`)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def recipe_text(
    changes: Mapping[str, Mapping[str, object]] | None = None,
    *,
    replace: Mapping[str, Mapping[str, object]] | None = None,
    base: Path = DEFAULT_RECIPE,
) -> str:
    """The recipe at `base` with `changes` merged into its sections (DELETE removes a
    key) and the sections in `replace` replaced whole."""
    document: dict[str, Any] = tomllib.loads(base.read_text())
    for section, values in (changes or {}).items():
        table = document.setdefault(section, {})
        for key, value in values.items():
            if value is DELETE:
                table.pop(key, None)
            else:
                table[key] = value
    for section, values in (replace or {}).items():
        document[section] = dict(values)
    return dumps(document)


def write_recipe(
    path: Path,
    changes: Mapping[str, Mapping[str, object]] | None = None,
    *,
    replace: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """`recipe_text(changes, replace=replace)` written to `path`; returns `path`."""
    path.write_text(recipe_text(changes, replace=replace))
    return path
