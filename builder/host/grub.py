"""crashkernel= in GRUB: a drop-in in /etc/default/grub.d, then update-grub."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from builder.errors import HostError
from builder.host.managed import is_managed, marker_line
from builder.host.paths import HostPaths

VALUE = re.compile(r"crashkernel=(\S+?)\"?$", re.MULTILINE)


def dropin_text(value: str) -> str:
    """The drop-in: appended to the default entries' command line.

    >>> print(dropin_text("256M"), end="")
    # Written by kdump-build enable; kdump-build disable removes it.
    # The crash reservation computed for this machine (kdump-build crashkernel).
    GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=256M"
    """
    return (
        marker_line()
        + "# The crash reservation computed for this machine (kdump-build crashkernel).\n"
        + f'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel={value}"\n'
    )


def applied_value(paths: HostPaths) -> str | None:
    """The value our drop-in holds, if it is there."""
    if not is_managed(paths.grub_dropin):
        return None
    found = VALUE.search(paths.grub_dropin.read_text())
    return found.group(1) if found else None


def has_grub(paths: HostPaths, *, program: bool = True) -> bool:
    """GRUB's defaults file is there (and, with `program`, update-grub to apply them)."""
    if not (paths.root / "etc/default/grub").is_file():
        return False
    return not program or shutil.which("update-grub") is not None


def other_settings(paths: HostPaths) -> list[Path]:
    """GRUB defaults files not ours that set crashkernel= too (the last one wins)."""
    candidates = [paths.root / "etc/default/grub"]
    if paths.grub_dropin_dir.is_dir():
        candidates += sorted(paths.grub_dropin_dir.glob("*.cfg"))
    found = []
    for path in candidates:
        if path == paths.grub_dropin or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if any("crashkernel=" in line and not line.lstrip().startswith("#")
               for line in text.splitlines()):  # fmt: skip
            found.append(path)
    return found


def update_grub() -> None:
    """Regenerate grub.cfg (its output goes to stderr, as it does when run by hand)."""
    try:
        result = subprocess.run(["update-grub"], capture_output=True, text=True, check=False)
    except OSError as error:
        raise HostError(f"update-grub: {error.strerror}") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise HostError(f"update-grub failed (exit {result.returncode}): {last}")


def apply(paths: HostPaths, value: str, *, run_update: bool = True) -> bool:
    """Write the drop-in with `value` and regenerate grub.cfg; True when it changed."""
    # Imported here: at start-up, builder.host.managed would cost ~9.5 ms.
    from builder.host.managed import write_managed

    changed = write_managed(paths.grub_dropin, dropin_text(value))
    if changed and run_update:
        update_grub()
    return changed


def remove(paths: HostPaths, *, run_update: bool = True) -> bool:
    """Remove our drop-in and regenerate grub.cfg; True when there was one."""
    # Imported here: at start-up, builder.host.managed would cost ~9.5 ms.
    from builder.host.managed import remove_managed

    removed = remove_managed(paths.grub_dropin)
    if removed and run_update:
        update_grub()
    return removed
