"""The recipe: one table of settings drives parsing, defaults, checks and docs.

Every key a recipe may hold is one `Setting` row. Parsing walks the TOML
document against that table, so an unknown key, a wrong type or a value out
of range is an error naming the file and the dotted key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from builder.crashkernel.fit import DEFAULT_RAM
from builder.crashkernel.model import DumpTarget
from builder.crashkernel.syntax import parse_crashkernel_args, parse_size
from builder.errors import RecipeError

ARCHES = ("x86_64", "aarch64")
COMPRESSIONS = ("zstd", "gzip", "xz", "lz4", "none")
# One list of targets: the fit model must know every target a recipe can name.
DUMP_TARGETS = tuple(target.value for target in DumpTarget)
COLLECTORS = ("makedumpfile", "copy")
DUMP_COMPRESSIONS = ("lzo", "zlib", "zstd", "none")
NETWORK_MODES = ("dhcp", "static")
NFS_VERSIONS = ("3", "4", "4.1", "4.2")
FINAL_ACTIONS = ("poweroff", "reboot", "halt")
FAILURE_ACTIONS = ("reboot", "poweroff", "halt", "shell")
KERNEL_MODES = ("reuse", "dedicated")
# Loose enough for every Debian package name, strict enough to keep options out.
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# One NFS mount option: no commas (they separate options), nothing the shell reads.
NFS_OPTION = re.compile(r"^[A-Za-z0-9_.:/=-]+$")
IPV4 = re.compile(
    r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
)
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class Missing(Enum):
    """Marks a setting the recipe must give."""

    REQUIRED = "required"


REQUIRED = Missing.REQUIRED
T = TypeVar("T")
Parser = Callable[[Any, str], Any]


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_type_name(value)}")
    if "\0" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _choice(*choices: str) -> Parser:
    def parse(value: Any, key: str) -> str:
        text = _string(value, key)
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    parse.__doc__ = " | ".join(choices)
    return parse


def _integer(low: int, high: int) -> Parser:
    def parse(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        if not low <= value <= high:
            raise ValueError(f"{value} is not between {low} and {high}")
        return value

    parse.__doc__ = f"integer {low}..{high}"
    return parse


def _string_list(pattern: re.Pattern[str] | None = None, what: str = "") -> Parser:
    def parse(value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected an array of strings, got {_type_name(value)}")
        items = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"item {index}: expected a string, got {_type_name(item)}")
            if pattern is not None and not pattern.match(item):
                raise ValueError(f"item {index}: {item!r} is not a valid {what}")
            if "\0" in item:
                raise ValueError(f"item {index}: NUL characters are not allowed")
            items.append(item)
        return tuple(items)

    parse.__doc__ = "array of strings"
    return parse


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {_type_name(value)}")
    return value


_boolean.__doc__ = "boolean"


def _absolute_path(value: Any, key: str) -> str:
    text = _string(value, key)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    return text


def _path_list(value: Any, key: str) -> tuple[str, ...]:
    items: tuple[str, ...] = _string_list()(value, key)
    for index, item in enumerate(items):
        if not item.startswith("/"):
            raise ValueError(f"item {index}: {item!r} is not an absolute path")
    return items


def _modules(value: Any, key: str) -> tuple[str, ...] | str:
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise ValueError(f'expected an array of strings or "auto", got {value!r}')
    names: tuple[str, ...] = _string_list(MODULE_NAME, "module name")(value, key)
    return names


EXTRA_FILE_SOURCES = ("root", "recipe", "host")


def _extra_files(value: Any, key: str) -> tuple[str, ...]:
    items: tuple[str, ...] = _string_list()(value, key)
    for index, item in enumerate(items):
        destination, sep, source = item.partition("=")
        if not destination.startswith("/"):
            raise ValueError(f"item {index}: {destination!r} is not an absolute path")
        if sep:
            kind, colon, path = source.partition(":")
            if not colon or kind not in EXTRA_FILE_SOURCES or not path:
                raise ValueError(
                    f"item {index}: {source!r} is not root:/PATH, recipe:PATH or host:/PATH"
                )
            if kind in ("root", "host") and not path.startswith("/"):
                raise ValueError(f"item {index}: {path!r} is not an absolute path")
    return items


_modules.__doc__ = 'array of module names or aliases, or "auto"'
_extra_files.__doc__ = "array of DEST or DEST=root:/P, recipe:P, host:/P"


def _crashkernel_value(value: Any, key: str) -> str:
    text = _string(value, key)
    try:
        parse_crashkernel_args(text, where="crashkernel")
    except RecipeError as error:
        raise ValueError(str(error)) from None
    return text


def _size_list(value: Any, key: str) -> tuple[str, ...]:
    items: tuple[str, ...] = _string_list()(value, key)
    if not items:
        raise ValueError("give at least one RAM size")
    for index, item in enumerate(items):
        try:
            size = parse_size(item, where=f"item {index}")
        except RecipeError as error:
            raise ValueError(str(error)) from None
        if size <= 0:
            raise ValueError(f"item {index}: RAM size must be positive, got {item!r}")
    return items


_string.__doc__ = "string"
_crashkernel_value.__doc__ = "crashkernel= value"
_size_list.__doc__ = "array of sizes (K/M/G/T)"
_absolute_path.__doc__ = "absolute path"
_path_list.__doc__ = "array of absolute paths"


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


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "target.arch", _choice(*ARCHES), "x86_64", "Architecture of the machine that will crash."
    ),
    Setting(
        "source.packages",
        _string_list(PACKAGE_NAME, "Debian package name"),
        (),
        "Debian packages fetched for target.arch (apt's candidate version at fetch "
        "time) and read in place; a metapackage is replaced by what it depends on.",
    ),
    Setting(
        "source.package_files",
        _string_list(),
        (),
        "Package files (.deb, .rpm, .tar.*) read in place, relative to the recipe.",
    ),
    Setting(
        "source.root",
        _string,
        "",
        "A directory used as the root of all files, `/` for the host. Excludes packages.",
    ),
    Setting(
        "kernel.mode",
        _choice(*KERNEL_MODES),
        "reuse",
        "`reuse`: the main (relocatable) image is the capture kernel; "
        "`dedicated`: kernel.dedicated_image is.",
    ),
    Setting(
        "kernel.image",
        _absolute_path,
        "/boot/vmlinuz-*",
        "The main kernel image in the source root; a glob must match exactly one file.",
    ),
    Setting(
        "kernel.dedicated_image",
        _string,
        "",
        "The capture kernel image in the source root when kernel.mode is `dedicated`.",
    ),
    Setting(
        "kernel.cmdline",
        _string_list(),
        ("irqpoll", "nr_cpus=1", "reset_devices"),
        "Capture kernel command line, before kernel.cmdline_append.",
    ),
    Setting(
        "kernel.cmdline_append",
        _string_list(),
        (),
        "Extra capture kernel parameters, e.g. the console.",
    ),
    Setting(
        "kernel.backup_region",
        _boolean,
        False,
        "Have purgatory copy the first 640 KiB of RAM aside before the capture kernel "
        "boots (x86 kernels before v5.5, which did not keep the low 1 MiB reserved).",
    ),
    Setting(
        "initrd.modules",
        _modules,
        (),
        "Kernel modules (names or aliases such as `fs-ext4`) to load, in this order; "
        'dependencies and soft dependencies come first. `"auto"`: the drivers this '
        "host uses for the dump target, read from its /sys.",
    ),
    Setting(
        "initrd.extra_binaries",
        _path_list,
        (),
        "More programs from the source root, with their libraries; a script brings "
        "its `#!` interpreter.",
    ),
    Setting(
        "initrd.extra_files",
        _extra_files,
        (),
        "More files: `/P` copies /P from the source root; `DEST=root:/P` from the source "
        "root, `DEST=recipe:P` from beside the recipe, `DEST=host:/P` from this machine.",
    ),
    Setting(
        "initrd.microcode",
        _string_list(re.compile(r"^(intel|amd)$"), "microcode vendor (intel, amd)"),
        (),
        "x86 CPU microcode put in an uncompressed early cpio: `intel` from "
        "/lib/firmware/intel-ucode, `amd` from /lib/firmware/amd-ucode in the source root.",
    ),
    Setting(
        "initrd.binaries",
        _path_list,
        ("/usr/bin/makedumpfile",),
        "Programs copied with their shared-library closure.",
    ),
    Setting(
        "initrd.busybox",
        _absolute_path,
        "/bin/busybox",
        "The busybox binary that provides the shell and tools of /init.",
    ),
    Setting("initrd.compression", _choice(*COMPRESSIONS), "zstd", "Compression of the initrd."),
    Setting(
        "initrd.compression_level",
        _integer(1, 22),
        19,
        "Compression level (zstd 1-22, gzip and xz use at most 9, lz4 at most 12).",
    ),
    Setting(
        "dump.target",
        _choice(*DUMP_TARGETS),
        "local",
        "Where the dump goes: `local` a filesystem on a block device, `raw` a whole "
        "block device written in makedumpfile's flattened format, `nfs` an NFS export, "
        "`ssh` a file on another host written through ssh.",
    ),
    Setting(
        "dump.device",
        _string,
        "",
        "`local`: the dump filesystem, `LABEL=...`, `UUID=...` or a /dev path "
        "(required); `raw`: the /dev path of the block device (required).",
    ),
    Setting("dump.fstype", _string, "ext4", "`local`: filesystem type of dump.device."),
    Setting(
        "dump.path",
        _absolute_path,
        "/",
        "Directory inside the dump filesystem, NFS export or ssh host; each dump gets "
        "a directory below it named after the crash time (network targets: "
        "`<host>-<time>`).",
    ),
    Setting(
        "dump.nfs",
        _string,
        "",
        "`nfs`: `<IPv4 address>:/<export>` (required).",
    ),
    Setting(
        "dump.nfs_version",
        _choice(*NFS_VERSIONS),
        "4.2",
        "`nfs`: NFS protocol version the kernel client mounts with.",
    ),
    Setting(
        "dump.nfs_options",
        _string_list(NFS_OPTION, "NFS mount option"),
        (),
        "`nfs`: extra mount options, e.g. `port=2049`; `addr=` and `vers=` are set from "
        "dump.nfs and dump.nfs_version.",
    ),
    Setting(
        "dump.ssh",
        _string,
        "",
        "`ssh`: `user@host` to write the dump to (required).",
    ),
    Setting("dump.ssh_port", _integer(1, 65535), 22, "`ssh`: the ssh server's port."),
    Setting(
        "dump.ssh_key",
        _string,
        "",
        "`ssh`: private key file (unencrypted ed25519 in OpenSSH or dropbear format), "
        "relative to the recipe; stored in the initrd with mode 0600 (required).",
    ),
    Setting(
        "dump.ssh_known_hosts",
        _string,
        "",
        "`ssh`: known_hosts file for the server's key, relative to the recipe; entries "
        "name the host without the port. Empty: any host key is accepted.",
    ),
    Setting(
        "dump.ssh_client",
        _absolute_path,
        "/usr/bin/dbclient",
        "`ssh`: dropbear's dbclient in the source root (package dropbear-bin).",
    ),
    Setting(
        "dump.network",
        _choice(*NETWORK_MODES),
        "dhcp",
        "`nfs`, `ssh`: how the capture kernel configures dump.interface "
        "(`dhcp` with busybox udhcpc, or `static` from dump.ip and dump.gateway). "
        "The network driver goes in initrd.modules.",
    ),
    Setting("dump.interface", _string, "eth0", "`nfs`, `ssh`: network interface to bring up."),
    Setting(
        "dump.ip",
        _string,
        "",
        "`nfs`, `ssh` with static network: address and prefix, e.g. `10.0.2.15/24`.",
    ),
    Setting(
        "dump.gateway",
        _string,
        "",
        "`nfs`, `ssh` with static network: default gateway address (optional).",
    ),
    Setting(
        "dump.hostname",
        _string,
        "",
        "`nfs`, `ssh`: the name in each dump's directory name; empty: the capture "
        "side's IP address.",
    ),
    Setting(
        "dump.collector",
        _choice(*COLLECTORS),
        "makedumpfile",
        "`makedumpfile` writes a filtered, compressed dump; `copy` copies /proc/vmcore.",
    ),
    Setting(
        "dump.level",
        _integer(0, 31),
        31,
        "makedumpfile dump level (-d): 31 drops zero, cache, user and free pages.",
    ),
    Setting(
        "dump.compression",
        _choice(*DUMP_COMPRESSIONS),
        "lzo",
        "makedumpfile page compression; `zstd` needs a makedumpfile linked with libzstd "
        "(Debian 12's is not).",
    ),
    Setting(
        "dump.pre",
        _string_list(),
        (),
        "Hook scripts (files relative to the recipe) run by the initrd's busybox sh, "
        "in order, before the dump is saved; see docs/targets.md for their contract.",
    ),
    Setting(
        "dump.post",
        _string_list(),
        (),
        "Hook scripts run after saving, whether it worked or not; see docs/targets.md.",
    ),
    Setting(
        "dump.device_timeout",
        _integer(1, 3600),
        60,
        "Seconds to wait for the dump device to appear.",
    ),
    Setting(
        "dump.final_action",
        _choice(*FINAL_ACTIONS),
        "reboot",
        "What the capture kernel does after a saved dump.",
    ),
    Setting(
        "dump.failure_action",
        _choice(*FAILURE_ACTIONS),
        "reboot",
        "What the capture kernel does when saving fails.",
    ),
    Setting(
        "crashkernel.reserve",
        _crashkernel_value,
        "192M",
        "The crashkernel= reservation the main kernel boots with.",
    ),
    Setting(
        "crashkernel.ram",
        _size_list,
        DEFAULT_RAM,
        "RAM sizes of the machines that will crash; the fit report judges "
        "crashkernel.reserve and recommends a crashkernel= for each. Not the build "
        "host's RAM: the output must not depend on where it is built.",
    ),
)

SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class TargetSettings:
    arch: str


@dataclass(frozen=True)
class SourceSettings:
    packages: tuple[str, ...]
    package_files: tuple[str, ...]
    root: str


@dataclass(frozen=True)
class KernelSettings:
    mode: str
    image: str
    dedicated_image: str
    cmdline: tuple[str, ...]
    cmdline_append: tuple[str, ...]
    backup_region: bool


@dataclass(frozen=True)
class InitrdSettings:
    modules: tuple[str, ...] | str
    extra_binaries: tuple[str, ...]
    extra_files: tuple[str, ...]
    microcode: tuple[str, ...]
    binaries: tuple[str, ...]
    busybox: str
    compression: str
    compression_level: int


@dataclass(frozen=True)
class DumpSettings:
    target: str
    device: str
    fstype: str
    path: str
    nfs: str
    nfs_version: str
    nfs_options: tuple[str, ...]
    ssh: str
    ssh_port: int
    ssh_key: str
    ssh_known_hosts: str
    ssh_client: str
    network: str
    interface: str
    ip: str
    gateway: str
    hostname: str
    collector: str
    level: int
    compression: str
    pre: tuple[str, ...]
    post: tuple[str, ...]
    device_timeout: int
    final_action: str
    failure_action: str


@dataclass(frozen=True)
class CrashkernelSettings:
    reserve: str
    ram: tuple[str, ...]


SECTIONS: dict[str, type] = {
    "target": TargetSettings,
    "source": SourceSettings,
    "kernel": KernelSettings,
    "initrd": InitrdSettings,
    "dump": DumpSettings,
    "crashkernel": CrashkernelSettings,
}


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
        for section in SECTIONS:
            values = getattr(self, section)
            result[section] = {
                item.name: list(value) if isinstance(value, tuple) else value
                for item in fields(values)
                for value in [getattr(values, item.name)]
            }
        return result


def _fail(path: Path | str, key: str, message: str) -> RecipeError:
    return RecipeError(f"{path}: {key}: {message}")


def parse_recipe(text: str, path: Path) -> Recipe:
    """Parse recipe TOML text; `path` names the file in errors and anchors relative paths.

    >>> parse_recipe('[dump]\\ndevice = "LABEL=kdump"\\n', Path("r.toml")).dump.fstype
    'ext4'
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: {error}") from None
    name = document.pop("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise _fail(path, "name", f"{name!r} is not a simple name (letters, digits, . _ -)")
    values: dict[str, Any] = {}
    for section, table in document.items():
        if section not in SECTIONS:
            raise _fail(path, section, f"unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(table, Mapping):
            raise _fail(path, section, f"expected a table, got {_type_name(table)}")
        for field_name, value in table.items():
            key = f"{section}.{field_name}"
            setting = SETTINGS_BY_KEY.get(key)
            if setting is None:
                known = ", ".join(s.field for s in SETTINGS if s.section == section)
                raise _fail(path, key, f"unknown key (known in [{section}]: {known})")
            try:
                values[key] = setting.parse(value, key)
            except ValueError as error:
                raise _fail(path, key, str(error)) from None
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        arguments: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.section != section:
                continue
            value = values.get(setting.key, setting.default)
            if value is REQUIRED:
                raise _fail(path, setting.key, "required key is missing")
            arguments[setting.field] = value
        sections[section] = cls(**arguments)
    recipe = Recipe(path=path, name=name, **sections)
    _check_combinations(recipe, values)
    return recipe


def _check_combinations(recipe: Recipe, given: Mapping[str, Any]) -> None:
    source = recipe.source
    has_packages = bool(source.packages or source.package_files)
    if source.root and has_packages:
        raise _fail(
            recipe.path,
            "source.root",
            "cannot be combined with source.packages or source.package_files",
        )
    if not source.root and not has_packages:
        raise _fail(
            recipe.path,
            "source",
            "give source.root (a directory, `/` for the host) or source.packages",
        )
    if recipe.kernel.mode == "dedicated" and not recipe.kernel.dedicated_image:
        raise _fail(recipe.path, "kernel.dedicated_image", "required when kernel.mode is dedicated")
    if recipe.kernel.mode == "reuse" and "kernel.dedicated_image" in given:
        raise _fail(
            recipe.path, "kernel.dedicated_image", "only used when kernel.mode is dedicated"
        )
    if recipe.dump.collector == "makedumpfile" and not any(
        binary.endswith("/makedumpfile") for binary in recipe.initrd.binaries
    ):
        raise _fail(
            recipe.path,
            "initrd.binaries",
            "dump.collector is makedumpfile but no makedumpfile is listed",
        )
    level = recipe.initrd.compression_level
    highest = {"gzip": 9, "xz": 9, "lz4": 12}.get(recipe.initrd.compression, 22)
    if level > highest:
        raise _fail(
            recipe.path,
            "initrd.compression_level",
            f"{level} is above {highest}, the highest {recipe.initrd.compression} level",
        )
    if recipe.initrd.microcode and recipe.target.arch != "x86_64":
        raise _fail(recipe.path, "initrd.microcode", "early microcode is for x86_64 only")
    _check_dump_target(recipe, given)


# Target-specific keys and the targets that read them; giving one to another
# target is a mistake worth an error rather than silence.
TARGET_KEYS: dict[str, tuple[str, ...]] = {
    "dump.device": ("local", "raw"),
    "dump.fstype": ("local",),
    "dump.path": ("local", "nfs", "ssh"),
    "dump.nfs": ("nfs",),
    "dump.nfs_version": ("nfs",),
    "dump.nfs_options": ("nfs",),
    "dump.ssh": ("ssh",),
    "dump.ssh_port": ("ssh",),
    "dump.ssh_key": ("ssh",),
    "dump.ssh_known_hosts": ("ssh",),
    "dump.ssh_client": ("ssh",),
    "dump.network": ("nfs", "ssh"),
    "dump.interface": ("nfs", "ssh"),
    "dump.ip": ("nfs", "ssh"),
    "dump.gateway": ("nfs", "ssh"),
    "dump.hostname": ("nfs", "ssh"),
}


def _check_dump_target(recipe: Recipe, given: Mapping[str, Any]) -> None:
    dump = recipe.dump
    path = recipe.path
    for key, targets in TARGET_KEYS.items():
        if key in given and dump.target not in targets:
            raise _fail(path, key, f"only used when dump.target is {' or '.join(targets)}")
    if dump.target in ("local", "raw") and not dump.device:
        raise _fail(path, "dump.device", "required key is missing")
    if dump.target == "local":
        device = dump.device
        if not (device.startswith(("LABEL=", "UUID=", "/dev/")) and device.split("=", 1)[-1]):
            raise _fail(
                path, "dump.device", f"{device!r} is not LABEL=..., UUID=... or a /dev/ path"
            )
    if dump.target == "raw":
        if not re.fullmatch(r"/dev/[A-Za-z0-9_./:-]+", dump.device) or "/../" in dump.device:
            raise _fail(path, "dump.device", f"{dump.device!r} is not a /dev/ path")
        if dump.collector != "makedumpfile":
            raise _fail(
                path,
                "dump.collector",
                "a raw target needs makedumpfile: its flattened stream carries its own length",
            )
    if dump.target == "nfs":
        server, sep, export = dump.nfs.partition(":")
        if not dump.nfs:
            raise _fail(path, "dump.nfs", "required when dump.target is nfs")
        if not (sep and IPV4.match(server) and export.startswith("/") and "," not in export):
            raise _fail(path, "dump.nfs", f"{dump.nfs!r} is not <IPv4 address>:/<export>")
        for index, option in enumerate(dump.nfs_options):
            if option.split("=", 1)[0] in ("addr", "vers", "nfsvers"):
                raise _fail(
                    path, "dump.nfs_options", f"item {index}: {option!r} is set by kdump-build"
                )
    if dump.target == "ssh":
        if not dump.ssh:
            raise _fail(path, "dump.ssh", "required when dump.target is ssh")
        user, sep, host = dump.ssh.partition("@")
        if not (sep and USER_NAME.match(user) and (IPV4.match(host) or HOST_NAME.match(host))):
            raise _fail(path, "dump.ssh", f"{dump.ssh!r} is not user@host")
        if not dump.ssh_key:
            raise _fail(path, "dump.ssh_key", "required when dump.target is ssh")
    if dump.target in ("nfs", "ssh"):
        if not INTERFACE_NAME.match(dump.interface):
            raise _fail(path, "dump.interface", f"{dump.interface!r} is not an interface name")
        if dump.network == "static":
            address, sep, prefix = dump.ip.partition("/")
            if not (IPV4.match(address) and sep and prefix.isdigit() and int(prefix) <= 32):
                raise _fail(path, "dump.ip", f"{dump.ip!r} is not an IPv4 address/prefix")
            if dump.gateway and not IPV4.match(dump.gateway):
                raise _fail(path, "dump.gateway", f"{dump.gateway!r} is not an IPv4 address")
        else:
            for key in ("dump.ip", "dump.gateway"):
                if key in given:
                    raise _fail(path, key, "only used when dump.network is static")
        if dump.hostname and not HOST_NAME.match(dump.hostname):
            raise _fail(path, "dump.hostname", f"{dump.hostname!r} is not a host name")


def load_recipe(path: Path) -> Recipe:
    """Read and parse a recipe file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read recipe ({error})") from None
    return parse_recipe(text, path)


def _default_text(setting: Setting) -> str:
    if setting.default is REQUIRED:
        return "required"
    if isinstance(setting.default, tuple):
        return "[" + ", ".join(f'"{item}"' for item in setting.default) + "]"
    if isinstance(setting.default, str):
        return f'"{setting.default}"'
    return str(setting.default)


def reference_markdown() -> str:
    """The recipe reference (docs/recipe.md), generated from SETTINGS."""
    lines = [
        "# Recipe reference",
        "",
        "Generated from `builder/recipe/` by `kdump-build recipe-doc`; do not edit.",
        "",
        "A recipe is a TOML file. `name` (top level, default: the file name without",
        "`.toml`) names the build; every other key lives in one of the tables below.",
        "Unknown keys are errors.",
    ]
    for section in SECTIONS:
        lines += [
            "",
            f"## [{section}]",
            "",
            "| key | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for setting in SETTINGS:
            if setting.section == section:
                kind = (setting.parse.__doc__ or "").strip()
                lines.append(
                    f"| `{setting.field}` | {kind} | `{_default_text(setting)}` | {setting.help} |"
                )
    return "\n".join(lines) + "\n"
