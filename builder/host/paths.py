"""Where kdump-build keeps and installs things on a machine, below one root.

The root is `/` on a real machine; tests give a temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.errors import HostError

UNIT_NAME = "kdump-build.service"
# After systemd's own rules (50-99 are the local/package range; 99 is left to the admin).
UDEV_RULE_NAME = "98-kdump-build.rules"


def kernel_version_name(version: str) -> str:
    """A kernel version as the hooks pass it: a name, never a path.

    The version becomes a directory name under /var/lib/kdump-build and /boot, so a
    `/` or `..` would reach outside them (and `kernel-removed` would delete there).

    >>> kernel_version_name("6.1.0-9-amd64")
    '6.1.0-9-amd64'
    >>> kernel_version_name("../../../srv")
    Traceback (most recent call last):
    builder.errors.HostError: '../../../srv': not a kernel version (a name like ...)
    """
    printable = version.isprintable() and not version.isspace()
    if not version or not printable or "/" in version or ".." in version or version[0] == ".":
        raise HostError(f"{version!r}: not a kernel version (a name like 6.1.0-9-amd64, "
                        "never a path with / or ..)")  # fmt: skip
    return version


@dataclass(frozen=True)
class HostPaths:
    """Every path `enable` reads or writes.

    >>> HostPaths(Path("/tmp/r")).capture("6.1.0-9-amd64")
    PosixPath('/tmp/r/var/lib/kdump-build/6.1.0-9-amd64')
    """

    root: Path = Path("/")

    def _at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def config_dir(self) -> Path:
        return self._at("/etc/kdump-build")

    @property
    def recipe(self) -> Path:
        return self.config_dir / "recipe.toml"

    @property
    def captures(self) -> Path:
        return self._at("/var/lib/kdump-build")

    @property
    def dumps_seen(self) -> Path:
        """The order in which pruning first met each dump (builder.host.dumps.arrival_order)."""
        return self.captures / ".dumps-seen"

    @property
    def lock(self) -> Path:
        """Held by enable, disable, boot and the kernel hooks: one at a time."""
        return self._at("/run/kdump-build.lock")

    def capture(self, version: str) -> Path:
        return self.captures / kernel_version_name(version)

    @property
    def unit(self) -> Path:
        return self._at(f"/etc/systemd/system/{UNIT_NAME}")

    @property
    def packaged_units(self) -> tuple[Path, ...]:
        """Where the Debian package installs the unit: /usr/lib (Debian 12, 13 and 14 have
        merged /usr, where /lib is /usr/lib), then /lib, where earlier builds put it."""
        return (self._at(f"/usr/lib/systemd/system/{UNIT_NAME}"),
                self._at(f"/lib/systemd/system/{UNIT_NAME}"))  # fmt: skip

    @property
    def postinst_hook(self) -> Path:
        # After initramfs-tools' hook, before zz-update-grub.
        return self._at("/etc/kernel/postinst.d/kdump-build")

    @property
    def postrm_hook(self) -> Path:
        return self._at("/etc/kernel/postrm.d/kdump-build")

    @property
    def install_plugin(self) -> Path:
        return self._at("/etc/kernel/install.d/60-kdump-build.install")

    @property
    def udev_rule(self) -> Path:
        return self._at(f"/etc/udev/rules.d/{UDEV_RULE_NAME}")

    @property
    def grub_dropin(self) -> Path:
        return self._at("/etc/default/grub.d/kdump-build.cfg")

    @property
    def grub_dropin_dir(self) -> Path:
        return self.grub_dropin.parent

    @property
    def grub_pending(self) -> Path:
        """Present while an update-grub for our drop-in has not yet succeeded."""
        return self.config_dir / "grub-update-pending"

    @property
    def grub_cfg(self) -> Path:
        return self._at("/boot/grub/grub.cfg")

    @property
    def boot(self) -> Path:
        return self._at("/boot")

    @property
    def modules(self) -> Path:
        return self._at("/lib/modules")

    @property
    def crash(self) -> Path:
        return self._at("/var/crash")

    def kernel_image(self, version: str) -> Path:
        """/boot/vmlinuz-VERSION; on a Debian 14 tree whose /boot is not filled yet, the
        package's own /usr/lib/modules/VERSION/vmlinuz (builder.image.layouts)."""
        name = kernel_version_name(version)
        boot = self.boot / f"vmlinuz-{name}"
        packaged = self.modules / name / "vmlinuz"
        return packaged if not boot.is_file() and packaged.is_file() else boot
