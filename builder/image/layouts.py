"""Where a release puts a kernel's image and config, so one recipe pattern finds both.

Debian up to 13, and every installed system, keep `/boot/vmlinuz-VER` beside
`/boot/config-VER`. Debian 14 split the kernel package: its files live in
`/usr/lib/modules/VER/` (`vmlinuz`, `config`) and nothing is in `/boot` until
installation puts it there. A recipe names the image the `/boot` way
(`/boot/vmlinuz-*`, the default); when that finds nothing, the same versions
are looked for in the modules directory, so the default recipes work unchanged
on every release, in packages, sysroots and on the host.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from enum import Enum

from builder.image.sources import Root


class KernelLayout(Enum):
    """One way of placing a kernel's files; the value is the directory they sit in."""

    BOOT = "/boot"  # /boot/vmlinuz-VER, /boot/config-VER
    MODULES = "/usr/lib/modules"  # /usr/lib/modules/VER/vmlinuz, /usr/lib/modules/VER/config
    # /lib/modules/VER/...: the same, on a root where /lib is not a link to /usr/lib
    LEGACY_MODULES = "/lib/modules"

    def image(self, name: str, version: str) -> str:
        """The image called `name` (vmlinuz, vmlinux) of `version` in this layout.

        >>> KernelLayout.MODULES.image("vmlinuz", "7.2.12+deb14-amd64")
        '/usr/lib/modules/7.2.12+deb14-amd64/vmlinuz'
        >>> KernelLayout.BOOT.image("vmlinux", "6.12.48+deb13-riscv64")
        '/boot/vmlinux-6.12.48+deb13-riscv64'
        """
        if self is KernelLayout.BOOT:
            return f"{self.value}/{name}-{version}"
        return f"{self.value}/{version}/{name}"

    def config(self, version: str) -> str:
        """The kernel config of `version` in this layout.

        >>> KernelLayout.MODULES.config("7.2.12+deb14-amd64")
        '/usr/lib/modules/7.2.12+deb14-amd64/config'
        """
        if self is KernelLayout.BOOT:
            return f"{self.value}/config-{version}"
        return f"{self.value}/{version}/config"


# The names of kernel images a `/boot` pattern may use.
IMAGE_NAMES = ("vmlinuz", "vmlinux")


@dataclass(frozen=True)
class BootPattern:
    """A `/boot/NAME-VERSIONGLOB` image pattern taken apart."""

    name: str
    version_glob: str


def boot_pattern(pattern: str) -> BootPattern | None:
    """The image name and version glob of a `/boot` image pattern; None for any other.

    >>> boot_pattern("/boot/vmlinuz-*")
    BootPattern(name='vmlinuz', version_glob='*')
    >>> boot_pattern("/boot/vmlinux-6.12*-riscv64")
    BootPattern(name='vmlinux', version_glob='6.12*-riscv64')
    >>> boot_pattern("/opt/kernels/bzImage") is None
    True
    """
    directory, base = posixpath.split(posixpath.normpath(pattern))
    name, dash, version_glob = base.partition("-")
    if directory != KernelLayout.BOOT.value or not dash or name not in IMAGE_NAMES:
        return None
    if not version_glob or "/" in version_glob:
        return None
    return BootPattern(name, version_glob)


def image_patterns(pattern: str) -> list[str]:
    """The patterns tried for a recipe's image, in order: as written, then each layout's.

    The modules directory may call it either name: Debian 13's riscv64 image is
    /boot/vmlinux-VER, Debian 14's is /usr/lib/modules/VER/vmlinuz.

    >>> image_patterns("/boot/vmlinuz-*")[:3]
    ['/boot/vmlinuz-*', '/usr/lib/modules/*/vmlinuz', '/usr/lib/modules/*/vmlinux']
    >>> image_patterns("/boot/vmlinux-*")[1:3]
    ['/usr/lib/modules/*/vmlinux', '/usr/lib/modules/*/vmlinuz']
    >>> image_patterns("/srv/vmlinuz")
    ['/srv/vmlinuz']
    """
    parts = boot_pattern(pattern)
    if parts is None:
        return [pattern]
    names = [parts.name, *(name for name in IMAGE_NAMES if name != parts.name)]
    return [pattern] + [
        layout.image(name, parts.version_glob)
        for layout in KernelLayout
        if layout is not KernelLayout.BOOT
        for name in names
    ]


def fallback_places(pattern: str) -> list[str]:
    """The directories a `/boot` pattern is also looked for in, for messages.

    >>> fallback_places("/boot/vmlinuz-*"), fallback_places("/srv/vmlinuz")
    (['/usr/lib/modules/*/', '/lib/modules/*/'], [])
    """
    parts = boot_pattern(pattern)
    if parts is None:
        return []
    return [
        f"{layout.value}/{parts.version_glob}/"
        for layout in KernelLayout
        if layout is not KernelLayout.BOOT
    ]


def find_images(root: Root, pattern: str) -> list[str]:
    """The files the first layout with any match finds for `pattern` in `root`, sorted.

    A host with Debian 14's kernel installed has it in both places; the `/boot`
    copy, the one the boot loader starts, wins.
    """
    for candidate in image_patterns(pattern):
        matches = root.glob(candidate)
        if matches:
            return matches
    return []


def config_candidates(version: str) -> list[str]:
    """Where the config of kernel `version` may be, in the order they are tried.

    >>> config_candidates("7.2.12+deb14-amd64")[:2]
    ['/boot/config-7.2.12+deb14-amd64', '/usr/lib/modules/7.2.12+deb14-amd64/config']
    """
    return [layout.config(version) for layout in KernelLayout]


def find_config(root: Root, version: str) -> str | None:
    """The path of kernel `version`'s config in `root`, or None when no layout has one."""
    for path in config_candidates(version):
        if root.exists(path):
            return path
    return None
