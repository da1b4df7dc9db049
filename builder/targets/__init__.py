"""Dump targets: where a capture saves the dump.

The registry. Every module of this package that defines a `TargetKind`
subclass is a target; its shell part `<name>.sh` lies beside it. Adding a
target is adding those two files (and their tests): nothing else names it.
The registry also completes the settings table with `dump.target` and each
target's own `dump.*` keys.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from typing import Any

from builder.recipe.dump import TargetKind
from builder.recipe.parsers import Setting, string
from builder.recipe.settings import SETTINGS as GENERAL_SETTINGS


@functools.cache
def target_kinds() -> tuple[TargetKind, ...]:
    """Every dump target in this package, in listing order.

    >>> [str(kind) for kind in target_kinds()]
    ['local', 'raw', 'nfs', 'ssh']
    """
    found: dict[str, TargetKind] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, TargetKind)
                and not inspect.isabstract(cls)
                and cls.__module__ == module.__name__
            ):
                found[cls.name] = cls()
    return tuple(sorted(found.values(), key=lambda kind: (kind.rank, kind.name)))


def target_kind(name: str) -> TargetKind:
    """The target called `name`; ValueError naming the known ones otherwise.

    >>> target_kind("local").summary
    'a filesystem on a block device'
    >>> target_kind("nsf")
    Traceback (most recent call last):
    ...
    ValueError: 'nsf' is not one of local, raw, nfs, ssh
    """
    for kind in target_kinds():
        if kind.name == name:
            return kind
    names = ", ".join(kind.name for kind in target_kinds())
    raise ValueError(f"{name!r} is not one of {names}")


def default_target() -> TargetKind:
    """The target a recipe without `dump.target` saves to."""
    (kind,) = (kind for kind in target_kinds() if kind.default)
    return kind


def _parse_target(value: Any) -> TargetKind:
    return target_kind(string(value))


def _target_setting() -> Setting:
    kinds = target_kinds()
    _parse_target.__doc__ = " | ".join(kind.name for kind in kinds)
    summaries = ", ".join(f"`{kind.name}` {kind.summary}" for kind in kinds)
    return Setting(
        "dump.target",
        _parse_target,
        default_target(),
        f"Where the dump goes: {summaries}. Each target's own keys are listed below.",
    )


def _with_target(general: tuple[Setting, ...]) -> tuple[Setting, ...]:
    """The general table with `dump.target` first among the [dump] keys."""
    first = next(index for index, setting in enumerate(general) if setting.section == "dump")
    return (*general[:first], _target_setting(), *general[first:])


# Every general recipe key, `dump.target` included (each target's own keys: `target_settings`).
SETTINGS = _with_target(GENERAL_SETTINGS)
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


def target_settings() -> dict[str, list[tuple[TargetKind, Setting]]]:
    """Every target-specific `dump.*` key, with the targets that read it (in listing order)."""
    owners: dict[str, list[tuple[TargetKind, Setting]]] = {}
    for kind in target_kinds():
        for setting in kind.settings:
            owners.setdefault(setting.key, []).append((kind, setting))
    return owners
