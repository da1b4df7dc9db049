"""Where kdump-build keeps and installs things on a machine, below one root.

The root is `/` on a real machine; tests give a temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "kdump-build.service"


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
        return self.captures / version

    @property
    def unit(self) -> Path:
        return self._at(f"/etc/systemd/system/{UNIT_NAME}")

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
        boot = self.boot / f"vmlinuz-{version}"
        packaged = self.modules / version / "vmlinuz"
        return packaged if not boot.is_file() and packaged.is_file() else boot
