"""TOML text -> `Recipe`: every key checked against the settings table.

An unknown key, a wrong type, a value out of range or an impossible
combination is a `RecipeError` naming the file and the dotted key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from builder.arch import ARCHES, arch_info
from builder.compression import MAX_LEVEL
from builder.errors import RecipeError
from builder.recipe.dump import TargetKind
from builder.recipe.model import (
    Collector,
    CrashkernelSettings,
    DumpSettings,
    FallbackTarget,
    FirmwareSettings,
    InitrdSettings,
    KernelMode,
    KernelSettings,
    Recipe,
    SourceSettings,
    TargetSettings,
)
from builder.recipe.parsers import REQUIRED, Check, Setting, type_name
from builder.recipe.settings import SECTIONS
from builder.targets import SETTINGS, SETTINGS_BY_KEY, target_settings

NAME = re.compile(r"[A-Za-z0-9._-]+")
_SECTION_TYPES: dict[str, type] = {
    "target": TargetSettings,
    "source": SourceSettings,
    "kernel": KernelSettings,
    "initrd": InitrdSettings,
    "crashkernel": CrashkernelSettings,
    "firmware": FirmwareSettings,
}


def parse_recipe(text: str, path: Path) -> Recipe:
    """Parse recipe TOML text; `path` names the file in errors and anchors relative paths.

    >>> text = '[source]\\nroot = "/"\\n[dump]\\ndevice = "LABEL=kdump"\\n'
    >>> recipe = parse_recipe(text, Path("r.toml"))
    >>> recipe.dump.target, recipe.dump.options.fstype
    (<dump target local>, 'ext4')
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: not valid TOML: {error}") from None
    if not document:
        raise RecipeError(f"{path}: empty recipe (it needs at least a [dump] table)")
    name = document.pop("name", path.stem)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RecipeError(f"{path}: name: {name!r} is not a simple name (letters, digits, . _ -)")
    general, targeted = _read_keys(document, path)
    check = Check(str(path), frozenset(general) | frozenset(targeted))
    sections = {section: _section(cls, section, general, check)
                for section, cls in _SECTION_TYPES.items()}  # fmt: skip
    recipe = Recipe(path=path, name=name, dump=_dump(general, targeted, check), **sections)
    _check_combinations(recipe, check)
    return recipe


def _read_keys(document: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parsed general keys, and the raw values of target keys (parsed once the target is known)."""
    owners = target_settings()
    general: dict[str, Any] = {}
    targeted: dict[str, Any] = {}
    for section, table in document.items():
        if section not in SECTIONS:
            raise RecipeError(f"{path}: {section}: unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(table, Mapping):
            raise RecipeError(f"{path}: {section}: expected a table, got {type_name(table)}")
        for field_name, value in table.items():
            key = f"{section}.{field_name}"
            setting = SETTINGS_BY_KEY.get(key)
            if setting is not None:
                general[key] = _parse_value(setting, value, path)
            elif key in owners:
                targeted[key] = value
            else:
                known = [s.field for s in SETTINGS if s.section == section]
                known += [key.split(".", 1)[1] for key in owners if section == "dump"]
                raise RecipeError(
                    f"{path}: {key}: unknown key (known in [{section}]: {', '.join(known)})"
                )
    return general, targeted


def _parse_value(setting: Setting, value: Any, path: Path | str) -> Any:
    try:
        return setting.parse(value)
    except ValueError as error:
        raise RecipeError(f"{path}: {setting.key}: {error}") from None


def _value(setting: Setting, given: Mapping[str, Any], check: Check, missing: str) -> Any:
    value = given.get(setting.key, setting.default)
    if value is REQUIRED:
        check.fail(setting.key, missing)
    return value


def _section(cls: type, section: str, general: Mapping[str, Any], check: Check) -> Any:
    arguments = {
        setting.field: _value(setting, general, check, "required key is missing")
        for setting in SETTINGS
        if setting.section == section
    }
    return cls(**arguments)


def _dump(general: Mapping[str, Any], targeted: Mapping[str, Any], check: Check) -> DumpSettings:
    """`[dump]`: the general keys, and the chosen target's own keys through its `options`."""
    common = {s.field: _value(s, general, check, "required key is missing")
              for s in SETTINGS if s.section == "dump"}  # fmt: skip
    target: TargetKind = common.pop("target")
    tables = common.pop("fallback")
    options = _target_options(target, targeted, check)
    fallback = tuple(_fallback(index, table, check) for index, table in enumerate(tables))
    dump = DumpSettings(target=target, options=options, fallback=fallback, **common)
    target.check(dump, check)
    for index, attempt in enumerate(dump.attempts()[1:]):
        attempt.target.check(attempt, _fallback_check(index, tables[index], check))
    return dump


def _target_options(target: TargetKind, targeted: Mapping[str, Any], check: Check) -> Any:
    """The target's own keys (raw TOML values by dotted key), parsed and checked."""
    owners = target_settings()
    for key in targeted:
        readers = [owner for owner, _ in owners[key]]
        if target not in readers:
            names = " or ".join(reader.name for reader in readers)
            check.fail(key, f"only used when dump.target is {names}")
    values = {}
    for setting in target.settings:
        if setting.key in targeted:
            try:
                values[setting.field] = setting.parse(targeted[setting.key])
            except ValueError as error:
                check.fail(setting.key, str(error))
        else:
            missing = f"required when dump.target is {target.name}"
            values[setting.field] = _value(setting, {}, check, missing)
    return target.options(values, check)


@dataclass(frozen=True)
class _FallbackCheck(Check):
    """Errors name the key inside its table: `dump.fallback[1].device`."""

    prefix: str = "dump"

    def fail(self, key: str, message: str) -> NoReturn:
        super().fail(key.replace("dump", self.prefix, 1), message)


def _fallback_check(index: int, table: Mapping[str, Any], check: Check) -> Check:
    given = frozenset(f"dump.{key}" for key in table)
    return _FallbackCheck(check.recipe, given, f"dump.fallback[{index}]")


def _fallback(index: int, table: Mapping[str, Any], check: Check) -> FallbackTarget:
    """One `[[dump.fallback]]` table: its target, and only that target's own keys."""
    inner = _fallback_check(index, table, check)
    try:
        target = SETTINGS_BY_KEY["dump.target"].parse(table["target"])
    except ValueError as error:
        inner.fail("dump.target", str(error))
    owners = target_settings()
    targeted = {}
    for key, value in table.items():
        dotted = f"dump.{key}"
        if key == "target":
            continue
        if dotted not in owners:
            inner.fail(dotted, "unknown key (a fallback table holds target and that target's keys)")
        targeted[dotted] = value
    return FallbackTarget(target, _target_options(target, targeted, inner))


def _check_combinations(recipe: Recipe, check: Check) -> None:
    _check_source(recipe, check)
    if "firmware.directory" in check.given and not recipe.firmware.loader:
        check.fail("firmware.directory", "only used when firmware.loader is true")
    if recipe.kernel.mode is KernelMode.DEDICATED and not recipe.kernel.dedicated_image:
        check.fail("kernel.dedicated_image", "required when kernel.mode is dedicated")
    if recipe.kernel.mode is KernelMode.REUSE and "kernel.dedicated_image" in check.given:
        check.fail("kernel.dedicated_image", "only used when kernel.mode is dedicated")
    if recipe.dump.collector is Collector.MAKEDUMPFILE and not any(
        binary.endswith("/makedumpfile") for binary in recipe.initrd.binaries
    ):
        check.fail(
            "initrd.binaries", "dump.collector is makedumpfile but no makedumpfile is listed"
        )
    level, compression = recipe.initrd.compression_level, recipe.initrd.compression
    highest = MAX_LEVEL.get(compression, 22)
    if level > highest:
        check.fail(
            "initrd.compression_level",
            f"{level} is above {highest}, the highest {compression.value} level",
        )
    if recipe.initrd.microcode and not arch_info(recipe.target.arch).early_microcode_dir:
        loaders = ", ".join(info.arch.value for info in ARCHES.values() if info.early_microcode_dir)
        check.fail("initrd.microcode", f"early microcode is for {loaders} only")


def _check_source(recipe: Recipe, check: Check) -> None:
    source = recipe.source
    has_packages = bool(source.packages or source.package_files)
    if source.root and has_packages:
        check.fail("source.root", "cannot be combined with source.packages or source.package_files")
    if not source.root and not has_packages:
        check.fail("source", "give source.root (a directory, `/` for the host) or source.packages")
    if source.release and not source.packages:
        check.fail("source.release", "only used with source.packages (the packages apt fetches)")
    # A `package/suite` pick without source.release: the host's sources plus that suite.


def load_recipe(path: Path) -> Recipe:
    """Read and parse a recipe file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except OSError as error:
        raise RecipeError(f"{path}: cannot read recipe ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise RecipeError(f"{path}: byte offset {error.start}: not UTF-8 text") from None
    return parse_recipe(text, path)
