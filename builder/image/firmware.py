"""The firmware files of an output directory (`firmware.loader = true`).

A firmware image (Yocto, Buildroot, a BMC) has neither Python nor kexec-tools.
It copies the output directory to `firmware.directory` and starts one of the
two boot files written here; both run the static `kdump-load` for the recipe's
architecture, shipped prebuilt with kdump-build, on that directory:

- `S90kdump-load`, for busybox init (and sysvinit): its `rcS` runs every
  `/etc/init.d/S??*` with `start` in order at boot, its `rcK` with `stop` at
  shutdown;
- `kdump-load.service`, a systemd unit, enabled by a link in
  `sysinit.target.wants/` so the capture is armed before most of the boot runs.

Pure: the recipe in, file names with bytes and modes out.
"""

from __future__ import annotations

from typing import Final

from builder.arch import Arch
from builder.errors import ImageError
from builder.kexec.loader import shipped_loader as loader_path
from builder.recipe.model import Recipe

LOADER: Final = "kdump-load"
BOOT_SCRIPT: Final = "S90kdump-load"
UNIT: Final = "kdump-load.service"


def shipped_loader(arch: Arch) -> bytes | None:
    """The prebuilt static kdump-load of `arch` shipped with kdump-build, None if absent."""
    try:
        return loader_path(arch).read_bytes()
    except OSError:
        return None


def loader_binary(recipe: Recipe) -> bytes:
    """The loader for the recipe's architecture; the error names the recipe and the key."""
    binary = shipped_loader(recipe.target.arch)
    if binary is None:
        raise ImageError(
            f"{recipe.path}: firmware.loader: this kdump-build ships no "
            f"{loader_path(recipe.target.arch)}"
        )
    return binary


def boot_script(directory: str) -> str:
    """The busybox init script that arms the capture in `directory` (a plain path)."""
    return f"""\
#!/bin/sh
# Written by kdump-build (firmware.loader): arms the crash capture kept in
# {directory} with its static loader. busybox init's rcS runs it with "start"
# at boot, rcK with "stop" at shutdown.
DIR={directory}
LOADER="$DIR/{LOADER}"

case "$1" in
    start|restart|reload)
        # Loading again replaces what was loaded: restart needs no unload first.
        "$LOADER" "$DIR" || {{ echo "{BOOT_SCRIPT}: the crash capture is not armed" >&2; exit 1; }}
        ;;
    stop)
        "$LOADER" --unload
        ;;
    status)
        "$LOADER" --status
        ;;
    *)
        echo "usage: $0 start|stop|restart|status" >&2
        exit 2
        ;;
esac
"""


def unit_text(directory: str) -> str:
    """The systemd unit that arms the capture in `directory` (a plain path) early at boot.

    Early (sysinit.target, no default dependencies): a crash later in the boot
    is captured too. The loader needs only /proc, /sys and the directory.
    """
    return f"""\
# Written by kdump-build (firmware.loader): arms the crash capture kept in
# {directory} with its static loader.
[Unit]
Description=Arm the crash dump capture (kdump-load)
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target shutdown.target
Conflicts=shutdown.target
ConditionPathExists={directory}/{LOADER}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={directory}/{LOADER} {directory}
ExecStop={directory}/{LOADER} --unload
StandardOutput=journal+console

[Install]
WantedBy=sysinit.target
"""


def firmware_files(recipe: Recipe) -> dict[str, tuple[bytes, int]]:
    """The firmware files of the output by name, with their modes; none unless asked for."""
    if not recipe.firmware.loader:
        return {}
    directory = recipe.firmware.directory.rstrip("/") or "/"
    return {
        LOADER: (loader_binary(recipe), 0o755),
        BOOT_SCRIPT: (boot_script(directory).encode(), 0o755),
        UNIT: (unit_text(directory).encode(), 0o644),
    }
