"""The parsed recipe: frozen dataclasses whose every choice is an enum (or, for
`dump.target`, a dump target).

`builder.recipe.parse` builds a `Recipe` from TOML; every product reads
only this model. The choices are in `builder.recipe.choices`, `[dump]` and
the dump targets' contract in `builder.recipe.dump`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from builder.arch import Arch
from builder.compression import Compression
from builder.recipe.choices import (
    Collector,
    DumpCompression,
    FailureAction,
    FinalAction,
    KernelMode,
    MicrocodeVendor,
    ModuleSelection,
)
from builder.recipe.dump import DumpSettings, FallbackTarget, TargetOptions

# The whole model in one place for its readers: the sections, their choices, [dump].
__all__ = [
    "Collector",
    "CrashkernelSettings",
    "DumpCompression",
    "DumpSettings",
    "FailureAction",
    "FallbackTarget",
    "FinalAction",
    "FirmwareSettings",
    "InitrdSettings",
    "KernelMode",
    "KernelSettings",
    "MicrocodeVendor",
    "ModuleSelection",
    "Recipe",
    "SourceSettings",
    "TargetOptions",
    "TargetSettings",
]


@dataclass(frozen=True)
class TargetSettings:
    arch: Arch


@dataclass(frozen=True)
class SourceSettings:
    packages: tuple[str, ...]
    package_files: tuple[str, ...]
    root: str
    release: str  # the Debian release source.packages come from; "" = the host's sources


@dataclass(frozen=True)
class KernelSettings:
    mode: KernelMode
    image: str
    dedicated_image: str
    cmdline: tuple[str, ...]
    cmdline_append: tuple[str, ...]
    backup_region: bool

    @property
    def capture_image_key(self) -> str:
        """The recipe key that names the capture kernel's image."""
        return "kernel.image" if self.mode is KernelMode.REUSE else "kernel.dedicated_image"


@dataclass(frozen=True)
class InitrdSettings:
    modules: tuple[str, ...] | ModuleSelection
    extra_binaries: tuple[str, ...]
    extra_files: tuple[str, ...]
    microcode: tuple[MicrocodeVendor, ...]
    binaries: tuple[str, ...]
    busybox: str
    compression: Compression
    compression_level: int


@dataclass(frozen=True)
class CrashkernelSettings:
    reserve: str
    ram: tuple[str, ...]


@dataclass(frozen=True)
class FirmwareSettings:
    loader: bool  # write kdump-load, its boot script and unit into the output
    directory: str  # where the image puts the output directory on the device


@dataclass(frozen=True)
class Recipe:
    """A parsed, validated recipe. `path` is where it was read from."""

    path: Path
    name: str
    target: TargetSettings
    source: SourceSettings
    kernel: KernelSettings
    initrd: InitrdSettings
    dump: DumpSettings
    crashkernel: CrashkernelSettings
    firmware: FirmwareSettings

    def relative(self, path: str) -> Path:
        """A path named in the recipe, relative to the recipe's directory."""
        return (self.path.parent / path).resolve()

    @property
    def machine_root(self) -> Path | None:
        """The root directory of the machine the recipe builds from (`source.root`: `/`
        for this host, a tree for an image), whose own settings files a recipe may leave
        to it; None for a recipe built from packages, which has no machine."""
        return self.relative(self.source.root) if self.source.root else None

    def to_json(self) -> dict[str, Any]:
        """All settings as plain JSON values, by section."""
        result: dict[str, Any] = {"name": self.name}
        for section in ("target", "source", "kernel", "initrd", "crashkernel", "firmware"):
            values = getattr(self, section)
            result[section] = {
                item.name: list(value) if isinstance(value, tuple) else value
                for item in fields(values)
                for value in [getattr(values, item.name)]
            }
        result["dump"] = self.dump.to_json()
        return result
