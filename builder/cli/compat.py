"""The commands' parameters on every typer Debian ships: 0.7.0 (Debian 12) and later.

The commands declare their parameters the current way, `Annotated[T, Option(...)]`,
with `X | None` and `list[X]`. typer 0.7.0 (Debian 12's python3-typer) reads
neither: it wants the parameter's information object as the default value,
whose first argument is the default, and `Optional[X]` for a union with None
(both came in typer 0.9). So `Argument` and `Option` here give 0.7.0 a
placeholder default, and `for_typer` turns an annotated command into the old
form for it; on a newer typer both leave everything as it is.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Optional

import typer

# typer.Argument's first parameter was the default before Annotated (typer 0.9).
ANNOTATED_PARAMETERS = "default" not in inspect.signature(typer.Argument).parameters or (
    inspect.signature(typer.Argument).parameters["default"].default is not inspect.Parameter.empty
)


def Argument(*declarations: str, **settings: Any) -> Any:
    """`typer.Argument` as Annotated metadata, on any typer."""
    if ANNOTATED_PARAMETERS:
        return typer.Argument(*declarations, **settings)
    return typer.Argument(..., *declarations, **settings)


def Option(*declarations: str, **settings: Any) -> Any:
    """`typer.Option` as Annotated metadata, on any typer."""
    if ANNOTATED_PARAMETERS:
        return typer.Option(*declarations, **settings)
    return typer.Option(..., *declarations, **settings)


def old_style_type(annotation: Any) -> Any:
    """`X | None` as `Optional[X]`, which typer 0.7 understands; other types as they are.

    >>> from pathlib import Path
    >>> old_style_type(Path | None) == Optional[Path], old_style_type(list[str])
    (True, list[str])
    """
    if isinstance(annotation, types.UnionType):
        members = typing.get_args(annotation)
        others = [member for member in members if member is not type(None)]
        if len(others) == 1 and len(members) == 2:
            return Optional[others[0]]  # noqa: UP045 - the spelling typer 0.7 reads
        return typing.Union[tuple(members)]  # noqa: UP007
    return annotation


def for_typer(command: Callable[..., Any]) -> Callable[..., Any]:
    """The command as this typer reads it: itself, or for typer 0.7 a wrapper whose
    parameters carry their information object as the default value."""
    if ANNOTATED_PARAMETERS:
        return command
    hints = typing.get_type_hints(command, include_extras=True)
    parameters, annotations, empty_is_none = [], {}, []
    for parameter in inspect.signature(command).parameters.values():
        annotation = hints.get(parameter.name, parameter.annotation)
        default = parameter.default
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, info = typing.get_args(annotation)[:2]
            if default is not inspect.Parameter.empty:
                info.default = default
            default = info
        if default is None or getattr(default, "default", 0) is None:
            empty_is_none.append(parameter.name)
        annotations[parameter.name] = old_style_type(annotation)
        parameters.append(parameter.replace(annotation=annotations[parameter.name],
                                            default=default))  # fmt: skip

    @functools.wraps(command)
    def old_style(*args: Any, **kwargs: Any) -> Any:
        # A repeatable option given no times: typer 0.7 passes [], newer ones the default.
        for name in empty_is_none:
            if kwargs.get(name) == []:
                kwargs[name] = None
        return command(*args, **kwargs)

    del old_style.__wrapped__  # typer must read the signature below, not the command's
    old_style.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    old_style.__annotations__ = annotations
    return old_style
