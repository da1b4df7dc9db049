"""Cheap argument coercion for the plain parameter types the commands use.

typer coerces every parameter, even one left at its default, through a
pydantic TypeAdapter built on first use: importing pydantic and building the
adapters is most of a bare command's start-up (`kdump-build status` runs at
boot). The commands take only `str`, `int`, `bool`, `Path` and lists of them,
with no validation beyond the type, so their coercion is done here instead;
anything else (or a typer without these internals) keeps typer's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer.core import TyperCommand, TyperGroup

try:  # typer's runtime-coercion contract (typer >= 0.26); private, so optional
    from typer._coercion import RuntimeParam
except ImportError:  # pragma: no cover - an older or newer typer: its own coercion
    RuntimeParam = None  # type: ignore[assignment,misc]

PLAIN_TYPES: dict[Any, type] = {str: str, int: int, bool: bool, Path: Path}
# ParameterInfo settings that ask typer for more than the type (their defaults).
_CHECKS = {
    "parser": None,
    "min": None,
    "max": None,
    "exists": False,
    "writable": False,
    "resolve_path": False,
    "allow_dash": False,
    "path_type": None,
    "file_okay": True,
    "dir_okay": True,
}


def plain_type(annotation: Any, parameter_info: Any) -> type | None:
    """The plain type a parameter's values are converted to, or None for typer's way.

    >>> from typer.models import OptionInfo
    >>> plain_type(list[str], OptionInfo()), plain_type(Path, OptionInfo(exists=True))
    (<class 'str'>, None)
    """
    if any(getattr(parameter_info, name, value) != value for name, value in _CHECKS.items()):
        return None
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation) or (None,)
    return PLAIN_TYPES.get(annotation)


if RuntimeParam is not None:

    class PlainParam(RuntimeParam):
        """Coercion to a plain type, one value or each of a list's."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = plain_type(self.annotation, self.parameter_info)
            if isinstance(value, list | tuple):
                return type(value)(self._one(kind, item, param, ctx) for item in value)
            return self._one(kind, value, param, ctx)

        @staticmethod
        def _one(kind: type | None, value: Any, param: Any, ctx: Any) -> Any:
            if kind is bool:
                if isinstance(value, bool):
                    return value
                raise typer.BadParameter(f"{value!r} is not a valid boolean.", ctx, param)
            if kind is int:
                try:
                    return int(value)
                except (TypeError, ValueError):
                    raise typer.BadParameter(
                        f"{value!r} is not a valid integer.", ctx, param
                    ) from None
            assert kind is not None
            return kind(value)


def seed_plain_coercion(params: list[Any]) -> list[Any]:
    """Give each parameter of a plain type the cheap coercion before typer builds its own."""
    if RuntimeParam is None:
        return params  # pragma: no cover
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", True) is not None:
            continue
        if plain_type(descriptor.annotation, descriptor.parameter_info) is not None:
            param._runtime_param = PlainParam(descriptor.parameter_info, descriptor.annotation)
    return params


class PlainCommand(TyperCommand):
    """A command whose plain parameters skip pydantic."""

    def get_params(self, ctx: Any) -> list[Any]:
        return seed_plain_coercion(super().get_params(ctx))


class PlainGroup(TyperGroup):
    """The command group, whose own options (--help) skip pydantic too."""

    def get_params(self, ctx: Any) -> list[Any]:
        return seed_plain_coercion(super().get_params(ctx))
