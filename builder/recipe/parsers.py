"""The `Setting` row, the value parsers the settings table is made of, and `Check`.

A parser takes the TOML value of one key and returns the typed value, or
raises ValueError with a message that the recipe parser prefixes with the
file and the dotted key. Its docstring is the type shown in the reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, NoReturn, TypeVar

from builder.errors import RecipeError

Parser = Callable[[Any], Any]
E = TypeVar("E", bound=StrEnum)


class Missing(Enum):
    """Marks a setting the recipe must give."""

    REQUIRED = "required"


REQUIRED = Missing.REQUIRED


@dataclass(frozen=True)
class Setting:
    """One recipe key: where it lives, how it is parsed, its default, its help."""

    key: str
    parse: Parser
    default: Any
    help: str

    @property
    def section(self) -> str:
        return self.key.split(".")[0]

    @property
    def field(self) -> str:
        return self.key.split(".", 1)[1]


@dataclass(frozen=True)
class Check:
    """Raises a `RecipeError` naming the recipe file and a key; knows which keys were given."""

    recipe: str
    given: frozenset[str]

    def fail(self, key: str, message: str) -> NoReturn:
        raise RecipeError(f"{self.recipe}: {key}: {message}")


def type_name(value: object) -> str:
    """How an error names the type of a TOML value.

    >>> type_name(3), type_name([]), type_name(True)
    ('an integer', 'an array', 'a boolean')
    """
    return {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def string(value: Any) -> str:
    """string"""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    if "\0" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def choice(members: Iterable[E]) -> Callable[[Any], E]:
    """A parser for one of `members` (an enum class, or some of its members), by value.

    >>> from builder.compression import Compression
    >>> choice(Compression)("xz")
    <Compression.XZ: 'xz'>
    >>> choice((Compression.ZSTD, Compression.GZIP))("xz")
    Traceback (most recent call last):
    ...
    ValueError: 'xz' is not one of zstd, gzip
    """
    allowed = tuple(members)

    def parse(value: Any) -> E:
        text = string(value)
        for member in allowed:
            if member.value == text:
                return member
        raise ValueError(f"{text!r} is not one of {', '.join(m.value for m in allowed)}")

    parse.__doc__ = " | ".join(member.value for member in allowed)
    return parse


def integer(low: int, high: int) -> Parser:
    """A parser for an integer in [low, high].

    >>> integer(0, 31)(31)
    31
    """

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type_name(value)}")
        if not low <= value <= high:
            raise ValueError(f"{value} is not between {low} and {high}")
        return value

    parse.__doc__ = f"integer {low}..{high}"
    return parse


def string_list(pattern: re.Pattern[str] | None = None, what: str = "") -> Parser:
    """A parser for an array of strings, each matching `pattern` (a `what`) when given."""

    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected an array of strings, got {type_name(value)}")
        items = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"item {index}: expected a string, got {type_name(item)}")
            if pattern is not None and not pattern.match(item):
                raise ValueError(f"item {index}: {item!r} is not a valid {what}")
            if "\0" in item:
                raise ValueError(f"item {index}: NUL characters are not allowed")
            items.append(item)
        return tuple(items)

    parse.__doc__ = "array of strings"
    return parse


def boolean(value: Any) -> bool:
    """boolean"""
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {type_name(value)}")
    return value


def absolute_path(value: Any) -> str:
    """absolute path"""
    text = string(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    return text


def path_list(value: Any) -> tuple[str, ...]:
    """array of absolute paths"""
    items: tuple[str, ...] = string_list()(value)
    for index, item in enumerate(items):
        if not item.startswith("/"):
            raise ValueError(f"item {index}: {item!r} is not an absolute path")
    return items
