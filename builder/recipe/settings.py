"""The settings table: one `Setting` row per general recipe key.

It drives parsing, defaults, errors and the generated reference
(docs/recipe.md). `builder.targets` adds `dump.target` (whose values are the
targets it finds) and each dump target the `dump.*` rows of its own keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from builder.arch import DEFAULT_ARCH, RECIPE_ARCHES
from builder.compression import INITRD_FORMATS, Compression
from builder.crashkernel_syntax import parse_crashkernel_args, parse_size
from builder.errors import RecipeError
from builder.recipe.choices import (
    Collector,
    DumpCompression,
    FailureAction,
    FinalAction,
    KernelMode,
    MicrocodeVendor,
    ModuleSelection,
)
from builder.recipe.parsers import (
    Parser,
    Setting,
    absolute_path,
    boolean,
    choice,
    integer,
    path_list,
    string,
    string_list,
)

# Loose enough for every Debian package name, strict enough to keep options out.
# `name/suite` picks the package from another suite (apt's own spelling).
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+(/[a-z][a-z0-9-]*)?$")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# The default initrd.compression_level. bench/kernel_update.py prints the zstd curve
# it comes from: levels up to 8 use a 2 MiB window, 9-16 a 4 MiB one, 17-19 the
# whole archive; at 8 the default initrd is 2.99 MiB, needs 3.1 MiB less
# reservation than at 19 (compressed size plus window) and compresses 20x faster.
DEFAULT_COMPRESSION_LEVEL = 8
# A Debian codename or suite name (trixie, sid, stable), or its backports suite.
RELEASE_NAME = re.compile(r"^[a-z][a-z0-9]*(-backports)?$")
EXTRA_FILE_SOURCES = ("root", "recipe", "host")
# RAM sizes a fit judges when neither the recipe (crashkernel.ram) nor the
# command line names any: a small guest, a typical server's lower end, and the
# top of kdump-utils' 256M range. Deliberately not the build host's RAM: the
# output must not depend on where it is built, and the host is often not the
# machine that will crash.
DEFAULT_RAM = ("1G", "4G", "64G")
# Where a firmware image keeps the output directory: read-only, shipped with the image.
FIRMWARE_DIRECTORY = "/usr/lib/kdump-build"
DEVICE_PATH = re.compile(r"/[A-Za-z0-9._+/-]*")


def _modules(value: Any) -> tuple[str, ...] | ModuleSelection:
    if value == ModuleSelection.AUTO.value:
        return ModuleSelection.AUTO
    if isinstance(value, str):
        raise ValueError(f'expected an array of strings or "auto", got {value!r}')
    names: tuple[str, ...] = string_list(MODULE_NAME, "module name")(value)
    return names


def _extra_files(value: Any) -> tuple[str, ...]:
    items: tuple[str, ...] = string_list()(value)
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


def _choice_list(members: Iterable[MicrocodeVendor], what: str) -> Parser:
    allowed = {member.value: member for member in members}

    def parse(value: Any) -> tuple[MicrocodeVendor, ...]:
        items: tuple[str, ...] = string_list()(value)
        for index, item in enumerate(items):
            if item not in allowed:
                raise ValueError(f"item {index}: {item!r} is not a valid {what}")
        return tuple(allowed[item] for item in items)

    parse.__doc__ = f"array of {' | '.join(allowed)}"
    return parse


def _release(value: Any) -> str:
    text = string(value)
    if text and not RELEASE_NAME.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a Debian release name (such as trixie, sid or trixie-backports)"
        )
    return text


def _device_directory(value: Any) -> str:
    """absolute path (letters, digits, `/._+-`)"""
    text = absolute_path(value)
    # The boot script and the systemd unit name it unquoted: keep it to characters
    # that mean nothing to sh or to systemd (no spaces, `%`, `$`, quotes).
    if not DEVICE_PATH.fullmatch(text) or "/../" in f"{text}/":
        raise ValueError(f"{text!r} is not a plain absolute path (letters, digits, /._+-)")
    return text


def _crashkernel_value(value: Any) -> str:
    text = string(value)
    try:
        parse_crashkernel_args(text, where="crashkernel")
    except RecipeError as error:
        raise ValueError(str(error)) from None
    return text


def _size_list(value: Any) -> tuple[str, ...]:
    items: tuple[str, ...] = string_list()(value)
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


def _fallback_tables(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError("expected an array of tables ([[dump.fallback]])")
    for index, table in enumerate(value):
        if "target" not in table:
            raise ValueError(f"item {index}: give its target")
    return tuple(value)


_fallback_tables.__doc__ = "array of tables, each a target and its keys"
_modules.__doc__ = 'array of module names or aliases, or "auto"'
_extra_files.__doc__ = "array of DEST or DEST=root:/P, recipe:P, host:/P"
_crashkernel_value.__doc__ = "crashkernel= value"
_release.__doc__ = "Debian release name"
_size_list.__doc__ = "array of sizes (K/M/G/T)"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "target.arch",
        choice(RECIPE_ARCHES),
        DEFAULT_ARCH,
        "Architecture of the machine that will crash.",
    ),
    Setting(
        "source.packages",
        string_list(PACKAGE_NAME, "Debian package name"),
        (),
        "Debian packages fetched for target.arch (apt's candidate version at fetch "
        "time) and read in place; a metapackage is replaced by what it depends on. "
        "`name/suite` picks one from another suite or a newer release "
        "(`linux-image-amd64/trixie-backports`, `makedumpfile/forky`), and with it the "
        "packages named here that it depends on (its libraries); without source.release "
        "the suite is added to the host's sources.",
    ),
    Setting(
        "source.package_files",
        string_list(),
        (),
        "Package files (.deb, .rpm, .tar.*) read in place, relative to the recipe.",
    ),
    Setting(
        "source.root",
        string,
        "",
        "A directory used as the root of all files, `/` for the host. Excludes packages.",
    ),
    Setting(
        "source.release",
        _release,
        "",
        "The Debian release source.packages come from (`trixie` on a Debian 12 host, `sid`): "
        "fetched with that release's own sources list (deb.debian.org main, -updates, "
        "-security), checked with the host's Debian archive keyring. A backports suite "
        "(`trixie-backports`) is its release with the backports' newer versions preferred. "
        "Empty: the host's configured apt sources (and pins), plus the suite of any pick.",
    ),
    Setting(
        "kernel.mode",
        choice(KernelMode),
        KernelMode.REUSE,
        "`reuse`: the main (relocatable) image is the capture kernel; "
        "`dedicated`: kernel.dedicated_image is.",
    ),
    Setting(
        "kernel.image",
        absolute_path,
        "/boot/vmlinuz-*",
        "The main kernel image in the source root; a glob must match exactly one file.",
    ),
    Setting(
        "kernel.dedicated_image",
        string,
        "",
        "The capture kernel image in the source root when kernel.mode is `dedicated`.",
    ),
    Setting(
        "kernel.cmdline",
        string_list(),
        ("irqpoll", "nr_cpus=1", "reset_devices", "panic=10"),
        "Capture kernel command line, before kernel.cmdline_append; `panic=10` resets the "
        "machine 10 s after a panic of the capture kernel instead of hanging.",
    ),
    Setting(
        "kernel.cmdline_append",
        string_list(),
        (),
        "Extra capture kernel parameters, e.g. the console.",
    ),
    Setting(
        "kernel.backup_region",
        boolean,
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
        path_list,
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
        _choice_list(MicrocodeVendor, "microcode vendor (intel, amd)"),
        (),
        "x86 CPU microcode put in an uncompressed early cpio: `intel` from "
        "/lib/firmware/intel-ucode, `amd` from /lib/firmware/amd-ucode in the source root.",
    ),
    Setting(
        "initrd.binaries",
        path_list,
        ("/usr/bin/makedumpfile",),
        "Programs copied with their shared-library closure.",
    ),
    Setting(
        "initrd.busybox",
        absolute_path,
        "/bin/busybox",
        "The busybox binary that provides the shell and tools of /init.",
    ),
    Setting(
        "initrd.compression",
        choice(INITRD_FORMATS),
        Compression.ZSTD,
        "Compression of the initrd.",
    ),
    Setting(
        "initrd.compression_level",
        integer(1, 22),
        DEFAULT_COMPRESSION_LEVEL,
        "Compression level (zstd 1-22, gzip and xz use at most 9, lz4 at most 12). The "
        "default is the zstd level that keeps the default initrd within 3 MiB with the "
        "least reservation for it (compressed initrd plus the kernel's decoder window), "
        "from the size/time curve `python -m bench.kernel_update` measures.",
    ),
    Setting(
        "dump.collector",
        choice(Collector),
        Collector.MAKEDUMPFILE,
        "`makedumpfile` writes a filtered, compressed dump; `copy` copies /proc/vmcore.",
    ),
    Setting(
        "dump.level",
        integer(0, 31),
        31,
        "makedumpfile dump level (-d): 31 drops zero, cache, user and free pages.",
    ),
    Setting(
        "dump.compression",
        choice(DumpCompression),
        DumpCompression.LZO,
        "makedumpfile page compression; `zstd` needs a makedumpfile linked with libzstd "
        "(Debian 12's is not).",
    ),
    Setting(
        "dump.pre",
        string_list(),
        (),
        "Hook scripts (files relative to the recipe) run by the initrd's busybox sh, "
        "in order, before the dump is saved; see docs/targets.md for their contract.",
    ),
    Setting(
        "dump.post",
        string_list(),
        (),
        "Hook scripts run after saving, whether it worked or not; see docs/targets.md.",
    ),
    Setting(
        "dump.device_timeout",
        integer(1, 3600),
        60,
        "Seconds to wait for the dump device (or network interface) to appear.",
    ),
    Setting(
        "dump.final_action",
        choice(FinalAction),
        FinalAction.REBOOT,
        "What the capture kernel does after a saved dump.",
    ),
    Setting(
        "dump.failure_action",
        choice(FailureAction),
        FailureAction.REBOOT,
        "What the capture kernel does when saving fails.",
    ),
    Setting(
        "dump.keep",
        integer(0, 100000),
        0,
        "Dumps to keep in the dump directory of this machine (a `local` target): at boot, "
        "`kdump-build boot` removes the oldest beyond this many; 0 keeps them all. The "
        "capture kernel never deletes anything.",
    ),
    Setting(
        "dump.fallback",
        _fallback_tables,
        (),
        "More dump targets, tried in order when saving to the ones before failed: "
        "`[[dump.fallback]]` tables, each with its `target` and that target's keys "
        "(the shared keys above apply to all). The capture logs which target saved the "
        "dump and records it in the dump directory (`kdump-target`).",
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
    Setting(
        "firmware.loader",
        boolean,
        False,
        "Also write `kdump-load` (the static loader for target.arch, no Python or "
        "kexec-tools needed), `S90kdump-load` (a boot script for busybox init's "
        "/etc/init.d) and `kdump-load.service` (a systemd unit) into the output, so a "
        "firmware image only copies the directory to firmware.directory; see docs/firmware.md.",
    ),
    Setting(
        "firmware.directory",
        _device_directory,
        FIRMWARE_DIRECTORY,
        "Where the firmware image puts the output directory on the device; the boot "
        "script and the unit load the capture from there.",
    ),
)

SECTIONS = ("target", "source", "kernel", "initrd", "dump", "crashkernel", "firmware")
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}
