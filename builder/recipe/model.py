"""The parsed recipe: frozen dataclasses whose every choice is an enum.

`builder.recipe.parse` builds a `Recipe` from TOML; every product reads
only this model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from builder.arch import Arch
from builder.compression import Compression
from builder.targets import DumpTarget
from builder.targets.base import TargetOptions


class KernelMode(StrEnum):
    """`kernel.mode`: run the main kernel again, or a separate one."""

    REUSE = "reuse"
    DEDICATED = "dedicated"


class ModuleSelection(StrEnum):
    """`initrd.modules = "auto"`: the drivers the build host uses for the dump target."""

    AUTO = "auto"


class MicrocodeVendor(StrEnum):
    """`initrd.microcode`: whose x86 CPU microcode goes in the early cpio."""

    INTEL = "intel"
    AMD = "amd"


class Collector(StrEnum):
    """`dump.collector`: what writes the dump."""

    MAKEDUMPFILE = "makedumpfile"
    COPY = "copy"


class DumpCompression(StrEnum):
    """`dump.compression`: makedumpfile's page compression."""

    LZO = "lzo"
    ZLIB = "zlib"
    ZSTD = "zstd"
    NONE = "none"


class FinalAction(StrEnum):
    """`dump.final_action`: what the capture kernel does after a saved dump."""

    POWEROFF = "poweroff"
    REBOOT = "reboot"
    HALT = "halt"


class FailureAction(StrEnum):
    """`dump.failure_action`: what the capture kernel does when saving fails."""

    REBOOT = "reboot"
    POWEROFF = "poweroff"
    HALT = "halt"
    SHELL = "shell"


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
class FallbackTarget:
    """One `[[dump.fallback]]` table: a target tried when the ones before it failed."""

    target: DumpTarget
    options: TargetOptions

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target.value, **self.options.to_json()}


@dataclass(frozen=True)
class DumpSettings:
    """`[dump]`: the target and its own options, what every target shares, and the
    fallback targets tried in order when saving to the one before fails."""

    target: DumpTarget
    options: TargetOptions
    collector: Collector
    level: int
    compression: DumpCompression
    pre: tuple[str, ...]
    post: tuple[str, ...]
    device_timeout: int
    final_action: FinalAction
    failure_action: FailureAction
    keep: int = 0
    fallback: tuple[FallbackTarget, ...] = ()

    def attempts(self) -> tuple[DumpSettings, ...]:
        """The targets in the order the capture tries them, each with the shared settings."""
        first = replace(self, fallback=())
        rest = (replace(first, target=item.target, options=item.options) for item in self.fallback)
        return (first, *rest)

    def to_json(self) -> dict[str, Any]:
        values: dict[str, Any] = {"target": self.target.value, **self.options.to_json()}
        for item in fields(self):
            if item.name not in ("target", "options", "fallback"):
                value = getattr(self, item.name)
                values[item.name] = list(value) if isinstance(value, tuple) else value
        values["fallback"] = [item.to_json() for item in self.fallback]
        return values


@dataclass(frozen=True)
class CrashkernelSettings:
    reserve: str
    ram: tuple[str, ...]


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

    def relative(self, path: str) -> Path:
        """A path named in the recipe, relative to the recipe's directory."""
        return (self.path.parent / path).resolve()

    def to_json(self) -> dict[str, Any]:
        """All settings as plain JSON values, by section."""
        result: dict[str, Any] = {"name": self.name}
        for section in ("target", "source", "kernel", "initrd", "crashkernel"):
            values = getattr(self, section)
            result[section] = {
                item.name: list(value) if isinstance(value, tuple) else value
                for item in fields(values)
                for value in [getattr(values, item.name)]
            }
        result["dump"] = self.dump.to_json()
        return result
