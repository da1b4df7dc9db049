"""The host's apt sources and pins, copied into a private apt state that adds suites.

A recipe without `source.release` takes its packages from the host's configured
sources. When it also picks packages from a suite (`makedumpfile/trixie`,
`linux-image-amd64/bookworm-backports`), apt needs the host's sources plus that
suite, and the picks pinned, without touching /etc/apt: so the private state
gets a copy of the host's source and preference files (only the names apt
itself reads: `*.list` and `*.sources`, preference parts without a dot or
ending in `.pref`), beside a sources list of the picked suites.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HOST_APT = Path("/etc/apt")

# The file names apt reads in sources.list.d and preferences.d (apt_preferences(5),
# sources.list(5)); others (`*.disabled`, `*.dpkg-old`) it ignores, and so do we.
_SOURCE_PART = re.compile(r"[A-Za-z0-9_.-]+\.(list|sources)")
_PREFERENCE_PART = re.compile(r"[A-Za-z0-9_-]+(\.pref)?")


def host_apt_files(host: Path = HOST_APT) -> dict[str, Path]:
    """The host's files apt would read, by their place in a state's etc directory.

    >>> sorted(host_apt_files(Path("/nonexistent")))
    []
    """
    found: dict[str, Path] = {}
    if (host / "sources.list").is_file():
        found["sources.list.d/host.list"] = host / "sources.list"
    for part, pattern in (("sources.list.d", _SOURCE_PART), ("preferences.d", _PREFERENCE_PART)):
        directory = host / part
        names = sorted(os.listdir(directory)) if directory.is_dir() else []
        for name in names:
            if pattern.fullmatch(name) and (directory / name).is_file():
                found[f"{part}/host-{name}"] = directory / name
    if (host / "preferences").is_file():
        found["preferences.d/host"] = host / "preferences"
    return found


def copy_host_apt(etc: Path, host: Path = HOST_APT) -> None:
    """Replace the host's copies in `etc` (a private state's) with the host's current files."""
    for part in ("sources.list.d", "preferences.d"):
        (etc / part).mkdir(parents=True, exist_ok=True)
        for old in (etc / part).glob("host*"):
            old.unlink()  # a file the host has since removed
    for place, source in host_apt_files(host).items():
        temporary = etc / f"{place}.{os.getpid()}.tmp"
        temporary.write_bytes(source.read_bytes())
        os.replace(temporary, etc / place)
