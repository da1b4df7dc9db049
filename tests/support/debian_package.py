"""kdump-build's .deb for the Debian 12 system of tests.support.debian_image, installed timed.

Shared by tests/vm/test_debian_system.py and bench/debian_arming.py: the .deb of this
checkout (scripts/build-deb) and the Debian 12 packages it depends on that the image
lacks, the guest shell that installs them with apt offline and runs `kdump-build
enable` on the guest clock, and the readers of what that shell and `systemctl show`
write.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from builder.image.fetch import fetch_packages
from tests.support.paths import REPO

# The package's dependencies that the image lacks (Debian 12's own, fetched on the host).
DEPENDENCIES = (
    "python3-typer", "python3-click", "python3-colorama", "python3-zstandard",
    "python3-cffi-backend", "python3-libarchive-c", "python3-lz4",
)  # fmt: skip

# Shell functions for a guest script (tests.support.debian_guest runs it with $out set).
# The image's apt has no package lists: only the .debs named and what is installed
# resolve, so an install that needs anything else fails here instead of downloading.
INSTALL_SH = r"""
now() { cut -d' ' -f1 /proc/uptime; }
install_debs() {
    apt-get install -y --no-install-recommends "$@" > $out/apt-install.txt 2>&1 \
        || { cat $out/apt-install.txt; exit 1; }
}
# The share's kdump-build .deb and dependencies, then enable; "start installed enabled"
# (seconds since boot) in $out/install-times.
install_and_enable() {
    start=$(now)
    install_debs /run/debvm/deb/kdump-build_*_all.deb /run/debvm/deps/*.deb
    installed=$(now)
    kdump-build enable > $out/enable.txt 2>&1 || { cat $out/enable.txt; exit 1; }
    echo "$start $installed $(now)" > $out/install-times
}
"""


def package_debs(share: Path) -> Path:
    """The .deb of this checkout (scripts/build-deb) in share/deb, its dependencies' .debs
    in share/deps, where INSTALL_SH's install_and_enable finds them."""
    result = subprocess.run([str(REPO / "scripts" / "build-deb"), str(share / "deb")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    copy_debs(DEPENDENCIES, share / "deps")
    return Path(result.stdout.strip())


def copy_debs(names: tuple[str, ...], destination: Path) -> list[Path]:
    """Debian packages of the host's release (the image's), fetched into the cache, copied."""
    destination.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(package.path, destination / package.path.name))
            for package in fetch_packages(list(names), "x86_64")]  # fmt: skip


def install_times(text: str) -> tuple[float, float]:
    """Seconds of the install and of enable, from install_and_enable's line.

    >>> install_times("12.50 40.75 61.00\\n")
    (28.25, 20.25)
    """
    start, installed, enabled = (float(value) for value in text.split())
    return installed - start, enabled - installed


def unit_times(text: str) -> dict[str, int]:
    """`systemctl show -p NAME...` output as a mapping, numbers as numbers.

    >>> unit_times("ExecMainStatus=0\\nActiveEnterTimestampMonotonic=9100200\\n")
    {'ExecMainStatus': 0, 'ActiveEnterTimestampMonotonic': 9100200}
    """
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {name: int(value) for name, value in pairs}
