"""What every dump target provides: its recipe keys, its checks, its initrd content,
its `/etc/kdump/kdump.conf` values and where host-only module selection looks.

A target is one module defining one `TargetKind` subclass; the registry in
`builder.targets` lists them. The capture side's `/init` dispatches on
`KDUMP_TARGET` to the code that saves the dump there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from builder.errors import RecipeError
from builder.recipe.parsers import Setting, absolute_path

if TYPE_CHECKING:
    from builder.recipe.model import DumpSettings


class RecipeFiles(ABC):
    """Files a recipe key names, relative to the recipe."""

    @abstractmethod
    def read(self, key: str, name: str) -> bytes:
        """The bytes of `name`; a `RecipeError` naming the recipe and `key` when unreadable."""

    @abstractmethod
    def where(self, key: str, name: str) -> str:
        """How an error about that file starts: `<recipe>: <key>: <path>`."""


# The directory each dump goes below; shared by the targets that write files.
PATH = Setting(
    "dump.path",
    absolute_path,
    "/",
    "Directory inside the dump filesystem, NFS export or ssh host; each dump gets "
    "a directory below it named after the crash time (network targets: "
    "`<host>-<time>`).",
)


class TargetOptions:
    """The settings one target reads (a frozen dataclass per target)."""

    def to_json(self) -> dict[str, Any]:
        """The options as recipe keys and JSON values."""
        values: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if isinstance(value, TargetOptions):
                values.update(value.to_json())
            else:
                values[item.name] = list(value) if isinstance(value, tuple) else value
        return values


@dataclass(frozen=True)
class GeneratedFile:
    """A file a target puts in the initrd: its path there, bytes and mode."""

    path: str
    data: bytes
    mode: int


@dataclass(frozen=True)
class TargetContent:
    """What a target adds to the initrd besides the recipe's own lists.

    `programs` are (path in the source root, the recipe key that names it):
    they come with their shared libraries.
    """

    modules: tuple[str, ...] = ()
    programs: tuple[tuple[str, str], ...] = ()
    files: tuple[GeneratedFile, ...] = ()


@dataclass(frozen=True)
class HostSelection:
    """Where `initrd.modules = "auto"` looks on the build host for drivers.

    `block_device` (LABEL=, UUID= or a /dev path) for a disk target, None for
    a network target (then every network interface's driver); `filesystem`
    adds `fs-<type>` when the capture mounts one.
    """

    block_device: str | None
    filesystem: str | None = None


@dataclass(frozen=True)
class Check:
    """Raises a `RecipeError` naming the recipe file and a key; knows which keys were given."""

    recipe: str
    given: frozenset[str]

    def fail(self, key: str, message: str) -> NoReturn:
        raise RecipeError(f"{self.recipe}: {key}: {message}")


class TargetKind(ABC):
    """One dump target; subclasses are stateless and used as singletons."""

    name: ClassVar[str]
    summary: ClassVar[str]  # what the target is, for `dump.target`'s help
    settings: ClassVar[tuple[Setting, ...]]  # the `dump.*` keys it reads

    @abstractmethod
    def options(self, values: Mapping[str, Any], check: Check) -> TargetOptions:
        """Check this target's parsed values (keyed by field) and return its options."""

    def check(self, dump: DumpSettings, check: Check) -> None:
        """Checks that involve the general dump settings too (none by default)."""
        return None

    def content(self, dump: DumpSettings, files: RecipeFiles) -> TargetContent:
        """Modules, programs and files the capture needs for this target."""
        return TargetContent()

    @abstractmethod
    def config(self, dump: DumpSettings) -> dict[str, str]:
        """This target's `KDUMP_*` variables for kdump.conf, unquoted."""

    @abstractmethod
    def label(self, dump: DumpSettings) -> str:
        """Where this target saves, in a few words: what the console and the dump's
        `kdump-target` record say (e.g. "LABEL=kdump", "10.0.2.2:/srv")."""

    @abstractmethod
    def host_selection(self, dump: DumpSettings) -> HostSelection:
        """Where host-only module selection finds this target's drivers."""
