"""crashkernel= in GRUB: a drop-in in /etc/default/grub.d, then update-grub."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from builder.crashkernel_syntax import command_line_words
from builder.errors import HostError
from builder.host.managed import is_managed, marker_line, remove_managed, write_managed
from builder.host.paths import HostPaths

# Our drop-in's line: every crashkernel= word on it (a fixed part and a `,cma` part).
LINE = re.compile(r"^GRUB_CMDLINE_LINUX_DEFAULT=.*$", re.MULTILINE)
WORD = re.compile(r"\scrashkernel=([^\s\"]+)")


def dropin_text(value: str) -> str:
    """The drop-in: appended to the default entries' command line.

    >>> print(dropin_text("256M"), end="")
    # Written by kdump-build enable; kdump-build disable removes it.
    # The crash reservation computed for this machine (kdump-build crashkernel).
    GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=256M"
    >>> dropin_text("72M 48M,cma").splitlines()[-1][-36:]
    'crashkernel=72M crashkernel=48M,cma"'
    """
    words = command_line_words(value)
    return (
        marker_line()
        + "# The crash reservation computed for this machine (kdump-build crashkernel).\n"
        + f'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT {words}"\n'
    )


def applied_value(paths: HostPaths) -> str | None:
    """The value our drop-in holds, if it is there."""
    if not is_managed(paths.grub_dropin):
        return None
    line = LINE.search(paths.grub_dropin.read_text())
    words = WORD.findall(line.group(0)) if line else []
    return " ".join(words) if words else None


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


def grub_cfg_has(paths: HostPaths, value: str) -> bool | None:
    """Whether grub.cfg passes crashkernel=`value`, every word of it (None when there is no
    grub.cfg to read)."""
    try:
        text = paths.grub_cfg.read_text(errors="replace")
    except OSError:
        return None
    return all(re.search(rf"\scrashkernel={re.escape(word)}(\s|$)", text) is not None
               for word in value.split())  # fmt: skip


def _update_until_applied(paths: HostPaths) -> None:
    """update-grub, with a mark that stays until it succeeds: the next run retries
    even when the drop-in is already as it should be."""
    write_managed(paths.grub_pending, marker_line() + "# update-grub has not yet succeeded\n")
    update_grub()
    remove_managed(paths.grub_pending)


def apply(paths: HostPaths, value: str, *, run_update: bool = True) -> bool:
    """Write the drop-in with `value` and regenerate grub.cfg until it has it; True when the
    drop-in changed."""
    changed = write_managed(paths.grub_dropin, dropin_text(value))
    stale = changed or is_managed(paths.grub_pending) or grub_cfg_has(paths, value) is False
    if stale and run_update:
        _update_until_applied(paths)
    return changed


def remove(paths: HostPaths, *, run_update: bool = True) -> bool:
    """Remove our drop-in and regenerate grub.cfg until that is done; True when there was one."""
    value = applied_value(paths)
    removed = remove_managed(paths.grub_dropin)
    stale = removed or is_managed(paths.grub_pending)
    if value is not None and grub_cfg_has(paths, value):
        stale = True
    if stale and run_update:
        _update_until_applied(paths)
    return removed
