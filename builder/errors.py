"""The error hierarchy. Only the CLI turns these into messages and exit codes."""

from __future__ import annotations


def shown(text: str) -> str:
    """Outside text as a one-line message may hold it: as is when printable, else escaped.

    >>> shown(".modinfo"), shown(".text\\n\\x1b[2J")
    ('.modinfo', "'.text\\\\n\\\\x1b[2J'")
    """
    return text if text.isprintable() else repr(text)


class KdumpBuildError(Exception):
    """A problem the user can fix: bad recipe, missing or corrupt input.

    The message is one line and names the file and key (or byte offset).
    """

    exit_code = 2


class FormatError(KdumpBuildError):
    """Bytes from outside are not the format they claim: corrupt, truncated or too large.

    The binary-format readers raise it unless the caller names a product's own
    error type (an `ImageError` for a kernel image, an `InitrdError` for an initrd).
    """


class RecipeError(KdumpBuildError):
    """The recipe is malformed or asks for something impossible."""


class SourceError(KdumpBuildError):
    """A file could not be found or read in the recipe's source root."""


class MissingLibraryError(SourceError):
    """A shared library a program needs is not in the source root; `soname` names it."""

    def __init__(self, message: str, soname: str) -> None:
        super().__init__(message)
        self.soname = soname


class FetchError(KdumpBuildError):
    """A Debian package could not be fetched."""


class ReleaseError(FetchError):
    """A named Debian release's package lists could not be fetched (no such release)."""


class ImageError(KdumpBuildError):
    """A kernel image is not understood (unknown format, truncated, corrupt)."""


class ModuleError(KdumpBuildError):
    """A kernel module is missing or does not match the capture kernel."""


class InitrdError(KdumpBuildError):
    """An initrd cannot be planned, written or read."""


class ReachError(KdumpBuildError):
    """The capture builds but could not dump: one line per gap, each naming its key."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


class FitError(KdumpBuildError):
    """The capture does not fit the crashkernel reservation."""

    exit_code = 3


class LayoutError(KdumpBuildError):
    """A kexec segment layout is impossible or violates the kernel's rules."""


class LoadError(KdumpBuildError):
    """The kernel refused to load the crash kernel."""


class OutputError(KdumpBuildError):
    """An output cannot be written where asked: it would replace what kdump-build did not
    make, or the filesystem refused (permission, no space, not a directory)."""


class DumpError(KdumpBuildError):
    """A saved dump cannot be read back (not a flattened stream, incomplete, corrupt)."""


class HostError(KdumpBuildError):
    """This machine cannot do what was asked: a missing package, no crash reservation,
    a dump directory the capture cannot reach, not root."""
