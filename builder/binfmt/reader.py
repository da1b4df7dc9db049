"""Bounds-checked reading of binary headers: every failure names the byte offset.

The binary-format readers (ELF, kernel images, device trees) read fields
through a `ByteReader`, so a truncated or corrupt input is always one
error of the caller's type, `<name>: byte 0x..: <what was expected>`, and
never an IndexError or a struct.error.
"""

from __future__ import annotations

from typing import NoReturn

from builder.errors import FormatError, KdumpBuildError

# Longest NUL-terminated string read before calling the input corrupt.
MAX_TEXT = 1024


class ByteReader:
    """Reads fields of `data`; `name` (usually a path) starts every error message.

    >>> reader = ByteReader(b"\\x01\\x02", "f")
    >>> reader.u16(0, "magic"), reader.u16(0, "magic", big_endian=True)
    (513, 258)
    >>> reader.u32(0, "size")
    Traceback (most recent call last):
    ...
    builder.errors.FormatError: f: truncated at byte 0x0: expected size (4 bytes), but ...
    """

    def __init__(
        self,
        data: bytes,
        name: str,
        error: type[KdumpBuildError] = FormatError,
        *,
        noun: str = "data",
    ) -> None:
        self.data = data
        self.name = name
        self.error = error
        self.noun = noun

    def fail(self, offset: int, message: str) -> NoReturn:
        raise self.error(f"{self.name}: byte {offset:#x}: {message}")

    def need(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise self.error(
                f"{self.name}: truncated at byte {offset:#x}: expected {what} "
                f"({size} bytes), but the {self.noun} ends at byte {len(self.data):#x}"
            )

    def raw(self, offset: int, size: int, what: str) -> bytes:
        self.need(offset, size, what)
        return self.data[offset : offset + size]

    def uint(self, offset: int, size: int, what: str, *, big_endian: bool = False) -> int:
        return int.from_bytes(self.raw(offset, size, what), "big" if big_endian else "little")

    def u8(self, offset: int, what: str) -> int:
        return self.uint(offset, 1, what)

    def u16(self, offset: int, what: str, *, big_endian: bool = False) -> int:
        return self.uint(offset, 2, what, big_endian=big_endian)

    def u32(self, offset: int, what: str, *, big_endian: bool = False) -> int:
        return self.uint(offset, 4, what, big_endian=big_endian)

    def u64(self, offset: int, what: str, *, big_endian: bool = False) -> int:
        return self.uint(offset, 8, what, big_endian=big_endian)

    def expect(self, offset: int, magic: bytes, what: str) -> None:
        found = self.raw(offset, len(magic), what)
        if found != magic:
            self.fail(offset, f"expected {what} {magic!r}, found {found!r}")

    def has(self, offset: int, magic: bytes) -> bool:
        """Whether `magic` is at `offset` (never raises)."""
        return offset >= 0 and self.data[offset : offset + len(magic)] == magic

    def cstring(self, offset: int, what: str, *, limit: int = MAX_TEXT) -> str:
        """A NUL-terminated ASCII string of at most `limit` bytes."""
        self.need(offset, 1, what)
        end = self.data.find(b"\x00", offset, offset + limit + 1)
        if end < 0:
            self.fail(offset, f"expected {what} ending in NUL within {limit} bytes")
        return self.data[offset:end].decode("ascii", "replace")
