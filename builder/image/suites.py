"""Debian's suites as the private apt state names them: sources lists and pins.

A release brings its -updates and -security suites (a development suite
such as sid has none), a backports suite its base release; a recipe's
`package/suite` item pins that package to that suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# Where a named release comes from, and the keys that sign it. Debian 12's
# debian-archive-keyring also holds Debian 13's signing keys.
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Suites that have no -updates and -security companions.
DEVELOPMENT_SUITES = frozenset({"sid", "unstable", "experimental"})


BACKPORTS = "-backports"
# Above a release's own 500 (and a backports suite's 100): a pinned package comes
# from its suite even when the release has a higher version; below 1000, which
# would allow downgrades of what is already installed (nothing is, here).
PICK_PRIORITY = 990


def _suite_entries(suite: str) -> list[tuple[str, str]]:
    """(mirror, suite) of a release with its -updates and -security, or of a backports suite."""
    if suite.endswith(BACKPORTS):
        return [(DEBIAN_MIRROR, suite)]
    entries = [(DEBIAN_MIRROR, suite)]
    if suite not in DEVELOPMENT_SUITES:
        entries += [
            (DEBIAN_MIRROR, f"{suite}-updates"),
            (DEBIAN_SECURITY_MIRROR, f"{suite}-security"),
        ]
    return entries


def release_sources(
    release: str, keyring: Path = DEBIAN_KEYRING, suites: Sequence[str] = ()
) -> str:
    """The one-line-style sources list of a Debian release, as the private apt state uses it.

    A backports release (`trixie-backports`) brings its base release; `suites`
    are the other suites packages are picked from.

    >>> print(release_sources("trixie", Path("/k.gpg")), end="")
    deb [signed-by=/k.gpg] http://deb.debian.org/debian trixie main
    deb [signed-by=/k.gpg] http://deb.debian.org/debian trixie-updates main
    deb [signed-by=/k.gpg] http://deb.debian.org/debian-security trixie-security main
    >>> print(release_sources("sid", Path("/k.gpg")), end="")
    deb [signed-by=/k.gpg] http://deb.debian.org/debian sid main
    >>> print(release_sources("trixie-backports", Path("/k.gpg")).splitlines()[-1])
    deb [signed-by=/k.gpg] http://deb.debian.org/debian trixie-backports main
    """
    entries: list[tuple[str, str]] = []
    # An empty release: the host's sources (copied beside this list) bring the rest.
    for suite in [*filter(None, (release.removesuffix(BACKPORTS), release)), *suites]:
        entries += [entry for entry in _suite_entries(suite) if entry not in entries]
    return "".join(
        f"deb [signed-by={keyring}] {mirror} {suite} main\n" for mirror, suite in entries
    )


def split_pick(name: str) -> tuple[str, str]:
    """A `source.packages` item as (package, suite it is picked from, or "").

    >>> split_pick("linux-image-amd64/trixie-backports"), split_pick("busybox-static")
    (('linux-image-amd64', 'trixie-backports'), ('busybox-static', ''))
    """
    package, _, suite = name.partition("/")
    return package, suite


def apt_preferences(release: str, picks: Mapping[str, str]) -> str:
    """The private state's apt preferences: a backports release preferred, picks pinned.

    Debian marks backports NotAutomatic (priority 100); a recipe whose release is
    a backports suite wants its newer versions, so they get a release's 500 and
    the higher version wins. A picked package comes from its suite whatever the
    versions; every other suite stays below the release.

    >>> print(apt_preferences("trixie-backports", {}), end="")
    Package: *
    Pin: release n=trixie-backports
    Pin-Priority: 500
    >>> print(apt_preferences("trixie", {"makedumpfile": "forky", "libc6": "forky"}))
    Package: *
    Pin: release n=forky
    Pin-Priority: 100
    <BLANKLINE>
    Package: libc6 makedumpfile
    Pin: release n=forky
    Pin-Priority: 990
    <BLANKLINE>
    """
    stanzas = []
    if release.endswith(BACKPORTS):
        stanzas.append(("*", release, 500))
    for suite in sorted(set(picks.values()) - {release}):
        if not suite.endswith(BACKPORTS):
            stanzas.append(("*", suite, 100))  # a newer release: only what is picked
    for suite in sorted(set(picks.values())):
        names = " ".join(sorted(name for name, chosen in picks.items() if chosen == suite))
        stanzas.append((names, suite, PICK_PRIORITY))
    return "\n".join(
        f"Package: {names}\nPin: release n={suite}\nPin-Priority: {priority}\n"
        for names, suite, priority in stanzas
    )
