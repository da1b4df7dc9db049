"""Recipe values written as TOML text: the one writer of `init` and `enable`.

Values come from outside (mount points, labels, the kernel command line, an
interface name); written as they are, a line break would end a comment or a
string and begin a key of the writer's choosing. Every string is escaped to
what TOML reads back as the same value, and comments show outside text with
its control characters spelled out.
"""

from __future__ import annotations

from builder.errors import RecipeError

# TOML's short escapes; any other control character is written as \\uXXXX.
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r",
                  '"': '\\"', "\\": "\\\\"}  # fmt: skip


def _is_control(char: str) -> bool:
    # TOML forbids these in a basic string (tab aside): C0 controls and DEL.
    return ord(char) < 0x20 or ord(char) == 0x7F


def toml_string(value: str, key: str = "") -> str:
    r"""`value` as a TOML basic string that reads back as `value`.

    >>> print(toml_string('a "b"\n\x1b'))
    "a \"b\"\n\u001b"

    A string that is not text (a file name with bytes undecodable as UTF-8) has
    no TOML form, and the recipe refuses NUL: a `RecipeError` naming `key`.
    """
    pieces = []
    for char in value:
        if char in _SHORT_ESCAPES:
            pieces.append(_SHORT_ESCAPES[char])
        elif char == "\0" or 0xD800 <= ord(char) <= 0xDFFF:
            raise RecipeError(f"{key or 'a value'}: {comment_text(value)!r}: a recipe holds "
                              "no NUL and only UTF-8 text")  # fmt: skip
        elif _is_control(char):
            pieces.append(f"\\u{ord(char):04x}")
        else:
            pieces.append(char)
    return '"' + "".join(pieces) + '"'


def toml_list(values: tuple[str, ...], key: str = "") -> str:
    """A TOML array of strings.

    >>> toml_list(("irqpoll", "console=ttyS0"))
    '["irqpoll", "console=ttyS0"]'
    """
    return "[" + ", ".join(toml_string(value, key) for value in values) + "]"


def comment_text(value: str) -> str:
    r"""Outside text for a comment line: what is not printable is spelled as an escape,
    so the comment stays one line and no key can follow it.

    >>> comment_text('/mnt/x\n pre = ["/tmp/a"]')
    '/mnt/x\\n pre = ["/tmp/a"]'
    """
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in value)
