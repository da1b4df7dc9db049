"""`[dump]`, and the contract every dump target fulfils (`TargetKind`).

A target is one module in builder/targets/ defining one `TargetKind`
subclass, with its shell part (`<name>.sh`) beside it; `builder.targets`
finds them. Everything else asks the target: its recipe keys and checks,
its initrd content and secrets, its `KDUMP_*` values, its memory prior for
the fit, where its dumps land on this machine, and its shell part.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

from builder.errors import HostError, RecipeError
from builder.recipe.choices import Collector, DumpCompression, FailureAction, FinalAction
from builder.recipe.parsers import Check, Setting


class RecipeFiles(ABC):
    """Files a recipe key names, relative to the recipe."""

    @abstractmethod
    def read(self, key: str, name: str) -> bytes:
        """The bytes of `name`; a `RecipeError` naming the recipe and `key` when unreadable."""

    @abstractmethod
    def where(self, key: str, name: str) -> str:
        """How an error about that file starts: `<recipe>: <key>: <path>`."""

    @abstractmethod
    def key_error(self, key: str, message: str) -> RecipeError:
        """The `RecipeError` for `key` of this recipe: `<recipe>: <key>: <message>`."""

    @abstractmethod
    def machine_root(self) -> Path | None:
        """The root of the machine the recipe builds from (`Recipe.machine_root`)."""


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
    they come with their shared libraries. `applets` are (busybox applet, the recipe
    key that needs it): the build refuses a busybox without them.
    """

    modules: tuple[str, ...] = ()
    programs: tuple[tuple[str, str], ...] = ()
    files: tuple[GeneratedFile, ...] = ()
    applets: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HostSelection:
    """Where `initrd.modules = "auto"` looks on the build host for drivers.

    `block_device` (LABEL=, UUID= or a /dev path) for a disk target, None for
    a network target: then the drivers of the interfaces with `interface_macs`
    (the link's own), or of every interface when the recipe names none by MAC;
    `filesystem` adds `fs-<type>` when the capture mounts one.
    """

    block_device: str | None
    filesystem: str | None = None
    interface_macs: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnableRequest:
    """`kdump-build enable --target NAME --to DESTINATION` and its options: the target's
    own key (`destination`), dump.path (None: the target's default) and, for a target
    that logs in, the key, port and whether any host key will do."""

    destination: str
    path: str | None = None
    key: Path | None = None
    port: int | None = None
    accept_any_host_key: bool = False


@dataclass(frozen=True)
class EnableKeys:
    """A network target's part of the recipe `enable --target` writes: its [dump] keys
    as TOML lines (comments included) and the server's address, whose link the host's
    network files then describe."""

    server: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class LocalDumps:
    """Where a target's dumps land on the crashed machine itself: the filesystem
    (`LABEL=`, `UUID=` or a /dev path) and the directory inside it."""

    device: str
    path: str


@dataclass(frozen=True)
class MemoryPrior:
    """What a target needs in the capture's memory while it writes (page cache,
    filesystem or network stack), before any calibration.

    `calibrated`: whether bench/calibrate_crashkernel.py measures crash cycles
    with this target, so a calibration can replace or absorb the prior;
    `basis` says where the figure comes from.
    """

    bytes: int
    calibrated: bool
    basis: str


@dataclass(frozen=True)
class Starter:
    """What `kdump-build init` writes for a target: its `[dump]` keys (TOML lines, with
    comments saying what to change), the drivers it needs on QEMU's virtio devices, and
    the Debian packages it adds."""

    keys: str
    modules: tuple[str, ...]
    packages: tuple[str, ...] = ()


class TargetKind(ABC):
    """One dump target; subclasses are stateless and used as singletons.

    >>> from builder.targets import target_kind
    >>> str(target_kind("nfs")), target_kind("nfs").summary
    ('nfs', 'an NFS export')
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # what the target is, for `dump.target`'s help
    settings: ClassVar[tuple[Setting, ...]]  # the `dump.*` keys it reads
    memory: ClassVar[MemoryPrior]
    # Where the target is listed (docs, errors): lower first.
    rank: ClassVar[int]
    starter: ClassVar[Starter]  # what `kdump-build init` writes for it
    # The `dump.target` of a recipe that names none (exactly one target says so).
    default: ClassVar[bool] = False
    # Whether it logs in to its server with a private key (`enable` makes one when
    # `--ssh-key` gives none; `login_key_line` says what the server must accept).
    logs_in_with_key: ClassVar[bool] = False

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<dump target {self.name}>"

    @abstractmethod
    def options(self, values: Mapping[str, Any], check: Check) -> TargetOptions:
        """Check this target's parsed values (keyed by field) and return its options."""

    def check(self, dump: DumpSettings, check: Check) -> None:
        """Checks that involve the general dump settings too (none by default)."""
        return None

    def content(self, dump: DumpSettings, files: RecipeFiles) -> TargetContent:
        """Modules, programs and files the capture needs for this target."""
        return TargetContent()

    def host_files(
        self, dump: DumpSettings, machine_root: Path | None
    ) -> tuple[tuple[str, str], ...]:
        """The host files its options name and `content` reads into the initrd, as (the
        recipe key, the name relative to the recipe; absolute for a file of the machine
        at `machine_root`, `Recipe.machine_root`); none by default. Root rebuilds
        from them at every boot, so the host refuses them unless only root can change
        them (builder/host/trust.py)."""
        return ()

    def secret_paths(self, dump: DumpSettings) -> tuple[str, ...]:
        """The initrd paths of its generated files only root may read (none by default);
        an initrd holding one is written mode 0600."""
        return ()

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

    def enable_keys(self, request: EnableRequest, machine_root: Path) -> EnableKeys:
        """The keys `enable --target NAME --to DESTINATION` writes for this target on the
        machine at `machine_root`, every refusal (a `HostError` naming the option) before
        anything is written. Only network targets have them: `enable` alone writes a
        local recipe, and a raw device is named by the admin."""
        raise HostError(f"--target: {self.name}: enable writes a recipe for a network "
                        "target only (a local one without --target)")  # fmt: skip

    def login_key_line(self, key: bytes, where: str, comment: str) -> str | None:
        """The authorized_keys line of `key`, the private key this target logs in to its
        server with (`enable` prints it); None (the default) for a target that logs in
        with no key."""
        return None

    def local_dumps(self, dump: DumpSettings) -> LocalDumps | None:
        """Where its dumps land on this machine, for pruning at boot; None (the default)
        when they leave it."""
        return None

    def shell_part(self) -> bytes:
        """The capture `/init`'s code for this target: `<name>.sh` beside its module,
        defining `save_to_target` (see builder/image/runtime/init.sh)."""
        package = type(self).__module__.rpartition(".")[0]
        return (files(package) / f"{self.name}.sh").read_bytes()


@dataclass(frozen=True)
class FallbackTarget:
    """One `[[dump.fallback]]` table: a target tried when the ones before it failed."""

    target: TargetKind
    options: TargetOptions

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target.name, **self.options.to_json()}


@dataclass(frozen=True)
class DumpSettings:
    """`[dump]`: the target and its own options, what every target shares, and the
    fallback targets tried in order when saving to the one before fails."""

    target: TargetKind
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
        values: dict[str, Any] = {"target": self.target.name, **self.options.to_json()}
        for item in fields(self):
            if item.name not in ("target", "options", "fallback"):
                value = getattr(self, item.name)
                values[item.name] = list(value) if isinstance(value, tuple) else value
        values["fallback"] = [item.to_json() for item in self.fallback]
        return values
