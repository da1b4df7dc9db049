"""Fetch Debian packages into a cache with apt's own client, for any architecture.

apt runs with a private state directory per architecture (package lists,
status, archives) so fetching never touches the host's apt state and works
for foreign architectures without `dpkg --add-architecture`. Without a
release, the host's configured sources are used as they are; with one
(`source.release`, say "trixie" on a Debian 12 host), the private state has
its own sources list for that release (deb.debian.org main, -updates and
-security), verified with the host's Debian archive keyring, and none of the
host's sources or pins.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.arch import Arch, arch_info
from builder.errors import FetchError, ReleaseError
from builder.image.cache import default_cache_dir, load_json_entry, store_cache_entry
from builder.image.hostapt import copy_host_apt
from builder.image.progress import ByteProgress
from builder.image.suites import DEBIAN_KEYRING, apt_preferences, release_sources, split_pick

# Part of every resolution memo's key: a memo written under other rules (before
# programs brought their libraries, before a virtual name meant its provider) must
# not answer for these ones.
RESOLUTION_RULES = "programs-bring-libraries; virtual-names-provided"

# Package lists older than this are refreshed, so "current" means current.
LISTS_MAX_AGE_SECONDS = 24 * 3600


def reverse_provides(showpkg: str) -> list[str]:
    """The packages under "Reverse Provides:" in `apt-cache showpkg` output, each once.

    Debian 13 renamed libraries for 64-bit time_t and kept the old names as
    virtual packages (libdw1t64 provides libdw1):

    >>> reverse_provides("Package: libdw1\\nVersions: \\n\\nProvides: \\nReverse Provides: \\n"
    ...                  "libdw1t64 0.196-1 (= 0.196-1)\\nlibdw1t64 0.195-2 (= 0.195-2)\\n")
    ['libdw1t64']
    """
    _, found, section = showpkg.partition("Reverse Provides:")
    names = [line.split()[0] for line in section.splitlines()[1:] if line.strip()] if found else []
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class FetchedPackage:
    """One package file in the cache, and the name the recipe asked for."""

    requested: str
    name: str
    version: str
    path: Path
    # The package whose Depends brought this shared library in; empty when the
    # recipe named it (or the metapackage it names depends on it).
    library_of: str = ""


class AptArchive:
    """apt-get and apt-cache bound to a private state for one Debian architecture.

    `release` empty: the host's configured sources (with `suites`, a copy of
    them in the state directory, beside those suites); else that Debian
    release's own sources list, kept in the state directory.
    """

    def __init__(
        self,
        cache_dir: Path,
        deb_arch: str,
        release: str = "",
        keyring: Path = DEBIAN_KEYRING,
        suites: Sequence[str] = (),
    ) -> None:
        self.deb_arch = deb_arch
        self.release = release
        self.keyring = keyring
        self.suites = tuple(sorted(set(suites) - {release}))
        apt = cache_dir / "apt"
        self.private = bool(release or self.suites)  # its own sources and pins
        lists = "+".join([release or "host", *self.suites])  # other suites, other lists
        self.state = apt / "releases" / lists / deb_arch if self.private else apt / deb_arch
        self.debs = cache_dir / "debs" / deb_arch
        self.sizes: dict[str, int] = {}  # package file sizes apt-cache gave, by name
        self.sections: dict[str, str] = {}  # archive sections apt-cache gave, by name

    @property
    def describe(self) -> str:
        """The architecture, and the release when one is named: `amd64 in Debian trixie`."""
        if not self.release:
            return f"{self.deb_arch} from the host's sources" if self.suites else self.deb_arch
        return f"{self.deb_arch} in Debian {self.release}"

    def _options(self) -> list[str]:
        return [*self._base_options(), *self._release_options()]

    def _release_options(self) -> list[str]:
        """The release's own sources list, and nothing of the host's sources or pins."""
        if not self.private:
            return []
        etc = self.state / "etc"
        return [
            "-o", f"Dir::Etc::SourceList={etc / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={etc / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={etc / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={etc / 'preferences.d'}",
            "-o", "Acquire::Languages=none",
        ]  # fmt: skip

    def _write_sources(self) -> None:
        if not self.private:
            return
        if not self.keyring.is_file():
            raise FetchError(
                f"cannot fetch Debian {self.release or '+'.join(self.suites)}: {self.keyring} "
                "is missing (install debian-archive-keyring)"
            )
        etc = self.state / "etc"
        if not self.release:
            copy_host_apt(etc)
        for directory in ("sources.list.d", "preferences.d"):
            (etc / directory).mkdir(parents=True, exist_ok=True)
        # apt reads this file itself: plain text, not a cache entry (which carries a digest).
        sources = etc / "sources.list"
        temporary = sources.with_name(f".sources.list.{os.getpid()}")
        temporary.write_text(release_sources(self.release, self.keyring, self.suites))
        os.replace(temporary, sources)
        self.pin({})

    def pin(self, picks: Mapping[str, str]) -> None:
        """Write the preferences: the release's suites, and `picks` (package -> suite)."""
        if not self.private:
            return
        preferences = self.state / "etc" / "preferences"
        temporary = preferences.with_name(f".preferences.{os.getpid()}")
        temporary.write_text(apt_preferences(self.release, picks))
        os.replace(temporary, preferences)

    def _base_options(self) -> list[str]:
        return [
            "-q",
            "-o",
            f"Dir::State::Lists={self.state / 'lists'}",
            "-o",
            f"Dir::State::status={self.state / 'status'}",
            "-o",
            f"Dir::Cache={self.state / 'cache'}",
            "-o",
            f"APT::Architecture={self.deb_arch}",
            "-o",
            f"APT::Architectures::={self.deb_arch}",
            "-o",
            "APT::Sandbox::User=root",
        ]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        if shutil.which(tool) is None:
            raise FetchError(
                f"cannot fetch packages: {tool} is not installed (a Debian host is needed)"
            )
        command = [tool, *self._options(), *args]
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise FetchError(
                f"{' '.join([tool, *args])} failed (exit {result.returncode}): {detail}"
            )
        return result.stdout

    def _download(self, items: Sequence[str], total: int, progress: ByteProgress | None) -> None:
        """apt-get download, its progress read from apt's status lines ("dlstatus:N:%:...")."""
        if progress is None:
            self._run("apt-get", "download", *items, cwd=self.debs)
            return
        command = ["apt-get", *self._options(), "-o", "APT::Status-Fd=1", "download", *items]
        if shutil.which("apt-get") is None:
            self._run("apt-get", "download", *items)  # says apt-get is missing
        with subprocess.Popen(command, cwd=self.debs, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as process:  # fmt: skip
            assert process.stdout is not None and process.stderr is not None
            for line in process.stdout:
                kind, _, rest = line.partition(":")
                number, _, rest = rest.partition(":")
                percent, _, _ = rest.partition(":")
                if kind == "dlstatus" and number.isdigit():
                    done = round(total * min(100.0, float(percent or 0)) / 100)
                    progress(done, total, f"{number} of {len(items)} packages")
            errors = process.stderr.read()
        if process.returncode != 0:
            detail = (errors.strip().splitlines() or ["no message"])[-1]
            raise FetchError(f"apt-get download failed (exit {process.returncode}): {detail}")
        progress(total, total, f"{len(items)} packages")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this architecture's state for one fetch at a time.

        Builds sharing a cache fetch concurrently: apt-get update and download
        write the same lists and .deb names, so they take turns.
        """
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            lock = open(self.state / "kdump-build.lock", "a")  # noqa: SIM115 - closed below
        except OSError:
            yield  # a read-only cache: nothing will be written to it either
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _lists_age(self) -> float | None:
        stamp = self.state / "updated"
        if not stamp.exists():
            return None
        return time.time() - stamp.stat().st_mtime

    def resolution_memo(self, names: Sequence[str]) -> Path:
        """Where the resolution of `names` against the current package lists is remembered.

        The key includes the lists' refresh stamp, so a refresh (daily, or
        `fetch --refresh`) resolves again and "current version" stays current.
        """
        try:
            stamp = str((self.state / "updated").stat().st_mtime_ns)
        except OSError:
            stamp = "never"
        key = hashlib.sha256("\0".join([RESOLUTION_RULES, stamp, *names]).encode()).hexdigest()
        return self.state / "resolved" / f"{key}.json"

    def update(self, *, force: bool = False) -> None:
        """Refresh the package lists when missing, stale, or when forced."""
        age = self._lists_age()
        if not force and age is not None and age < LISTS_MAX_AGE_SECONDS:
            return
        for sub in ("lists/partial", "cache/archives/partial"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        (self.state / "status").touch()
        self._write_sources()
        try:
            self._run("apt-get", "update")
        except FetchError as error:
            # One broken index (a mirror mid-sync) fails the whole update, yet
            # the lists that did arrive still resolve packages. No stamp is
            # written, so the next fetch tries again.
            if age is None and not self._has_lists():
                if self.release:
                    raise ReleaseError(f"Debian {self.release!r}: {error}") from None
                raise
            return
        (self.state / "updated").write_text(f"{time.time()}\n")

    def _has_lists(self) -> bool:
        return any((self.state / "lists").glob("*_Packages*"))

    def candidates(
        self, names: Sequence[str], *, missing_ok: bool = False
    ) -> dict[str, tuple[str, list[str]]]:
        """Candidate (version, depends) of each package, in one apt-cache call; with
        `missing_ok`, names without a package (virtual ones) are left out."""
        try:
            records = self._run("apt-cache", "show", "--no-all-versions", *names)
        except FetchError:
            # apt-cache fails only when none of the names exists.
            if missing_ok:
                return {}
            raise FetchError(
                f"{', '.join(repr(name) for name in names)}: no such package for {self.describe}"
            ) from None
        found: dict[str, tuple[str, list[str]]] = {}
        for record in records.split("\n\n"):
            fields: dict[str, str] = {}
            for line in record.splitlines():
                key, sep, value = line.partition(": ")
                if sep and not line.startswith(" "):
                    fields.setdefault(key, value.strip())
            if "Package" not in fields or "Version" not in fields:
                continue
            relations = ", ".join(fields.get(key, "") for key in ("Pre-Depends", "Depends"))
            depends = [
                alternative.split("|")[0].split("(")[0].split(":")[0].strip()
                for alternative in relations.split(",")
                if alternative.strip()
            ]
            found.setdefault(fields["Package"], (fields["Version"], depends))
            if fields.get("Size", "").isdigit():
                self.sizes.setdefault(fields["Package"], int(fields["Size"]))
            self.sections.setdefault(fields["Package"], fields.get("Section", ""))
        for name in names:
            if name not in found and not missing_ok:
                raise FetchError(f"{name!r}: no such package for {self.describe}")
        return found

    def sole_provider(self, name: str) -> str:
        """The one package that provides `name`, a virtual package (apt's own choice
        when asked to install it); refused when none or several do."""
        providers = sorted(reverse_provides(self._run("apt-cache", "showpkg", name)))
        if len(providers) == 1:
            return providers[0]
        if not providers:
            raise FetchError(f"{name!r}: no such package for {self.describe}")
        raise FetchError(
            f"{name!r}: no such package for {self.describe}; it is provided by "
            f"{', '.join(providers)}: name one of them"
        )

    def check_picks(self, picks: Mapping[str, tuple[str, str]]) -> None:
        """Refuse a pick whose suite does not have the package (apt would take another's).

        `picks`: package -> (suite, the version apt chose); `apt-cache madison`
        says which suites hold which versions.
        """
        listing = self._run("apt-cache", "madison", *sorted(picks))
        held = set()
        for line in listing.splitlines():
            fields = [field.strip() for field in line.split("|")]
            if len(fields) == 3 and len(fields[2].split()) >= 2:
                held.add((fields[0], fields[1], fields[2].split()[1].split("/")[0]))
        for name, (suite, version) in sorted(picks.items()):
            if (name, version, suite) not in held:
                raise FetchError(
                    f"'{name}/{suite}': no such package in {suite} for {self.describe}"
                )

    def _cached(self, name: str, version: str) -> Path | None:
        quoted_version = version.replace(":", "%3a")
        matches = sorted(self.debs.glob(f"{name}_{quoted_version}_*.deb"))
        return matches[0] if matches else None

    def download(
        self, wanted: Sequence[tuple[str, str]], progress: ByteProgress | None = None
    ) -> list[Path]:
        """Exact (name, version) pairs as cached .deb files, downloading the missing ones."""
        self.debs.mkdir(parents=True, exist_ok=True)
        missing = [(name, version) for name, version in wanted if not self._cached(name, version)]
        if missing:
            total = sum(self.sizes.get(name, 0) for name, _ in missing)
            self._download([f"{name}={version}" for name, version in missing], total, progress)
        paths = []
        for name, version in wanted:
            path = self._cached(name, version)
            if path is None:
                raise FetchError(f"apt-get download {name}={version} produced no .deb file")
            paths.append(path)
        return paths


def fetch_packages(
    names: Sequence[str],
    arch: Arch | str,
    *,
    cache_dir: Path | None = None,
    refresh: bool = False,
    release: str = "",
    progress: ByteProgress | None = None,
) -> list[FetchedPackage]:
    """Fetch the candidate versions of Debian packages for `arch` into the cache.

    `release` names the Debian release they come from (empty: the host's
    configured sources, a pick's suite beside them; a backports suite such as
    `trixie-backports`: that release with its backports preferred); a name
    written `package/suite` is picked from that suite (`makedumpfile/forky`),
    and so are the named packages it depends on (its libraries). `progress`
    hears how a download goes. A metapackage
    (one that ships nothing but documentation, such as `linux-image-amd64`)
    is replaced by what it depends on, so the recipe can name the moving
    kernel ABI by its stable name. (It runs apt-get against Debian's mirrors;
    every test that builds from Debian packages exercises it.)
    """
    picks = {package: suite for package, suite in map(split_pick, names) if suite}
    deb_arch = arch_info(arch).debian
    archive = AptArchive(
        cache_dir or default_cache_dir(), deb_arch, release, suites=list(picks.values())
    )
    with archive.locked():
        return _fetch_locked(archive, names, refresh, progress)


def _pick_libraries(archive: AptArchive, names: Sequence[str]) -> dict[str, str]:
    """The picks of `names`, grown by the named packages a picked one depends on.

    makedumpfile from a newer release needs that release's libdw1t64 and libc6
    when the recipe names them; they follow it, round by round (apt-cache
    answers with the pins of the round before).
    """
    picks = {package: suite for package, suite in map(split_pick, names) if suite}
    named = {split_pick(name)[0] for name in names}
    while True:
        archive.pin(picks)
        if not picks:
            return picks
        grown = dict(picks)
        answers = archive.candidates(sorted(picks))
        for package, (_, depends) in answers.items():
            for dependency in depends:
                if dependency in named:
                    grown.setdefault(dependency, picks[package])
        if grown == picks:
            archive.check_picks({name: (suite, answers[name][0]) for name, suite in picks.items()})
            return picks
        picks = grown


def _fetch_locked(
    archive: AptArchive, names: Sequence[str], refresh: bool, progress: ByteProgress | None
) -> list[FetchedPackage]:
    archive.update(force=refresh)
    memo = archive.resolution_memo(names)
    picks = _pick_libraries(archive, names) if archive.private else {}
    remembered = _load_resolution(memo)
    if remembered is not None:
        return remembered
    fetched: list[FetchedPackage] = []
    seen: set[str] = set()
    pending = [_Wanted(name, split_pick(name)[0]) for name in names]
    while pending:
        batch = list(
            {wanted.name: wanted for wanted in pending if wanted.name not in seen}.values()
        )
        if not batch:
            break
        seen.update(wanted.name for wanted in batch)
        found, pending = _resolve_batch(archive, batch, progress)
        seen.update(package.name for package in found)  # a virtual name's provider
        _follow_picks(archive, picks, batch, pending)
        fetched += found
    _store_resolution(memo, fetched)
    return fetched


def _follow_picks(
    archive: AptArchive, picks: dict[str, str], batch: Sequence[_Wanted], pending: list[_Wanted]
) -> None:
    """What a picked package depends on (a metapackage's kernel, its libraries) comes
    from the same suite: pinned before the next batch is asked for."""
    picked = {wanted.name for wanted in batch if wanted.name in picks}
    if not picked:
        return
    by_requested = {wanted.requested: picks[wanted.name] for wanted in batch
                    if wanted.name in picked}  # fmt: skip
    for wanted in pending:
        suite = by_requested.get(wanted.requested)
        if suite and (wanted.library_of in picked or wanted.library_of == ""):
            picks.setdefault(wanted.name, suite)
    archive.pin(picks)


@dataclass(frozen=True)
class _Wanted:
    requested: str  # the recipe's name
    name: str
    library_of: str = ""  # set when only a shared library of that package is wanted


# The archive sections of shared-library packages: what a program's Depends adds
# on its own (its perl, shell or other program dependencies are the recipe's to name).
LIBRARY_SECTIONS = frozenset({"libs", "oldlibs"})


def _resolve_batch(
    archive: AptArchive, batch: Sequence[_Wanted], progress: ByteProgress | None
) -> tuple[list[FetchedPackage], list[_Wanted]]:
    """Download one batch; return its packages and what their Depends add next."""
    # Imported here: at start-up, builder.image.packages would cost ~36 ms.
    from builder.image.packages import package_is_empty  # packages needs nothing from here

    named = [wanted for wanted in batch if not wanted.library_of]
    candidates = archive.candidates([w.name for w in named], missing_ok=True) if named else {}
    # A name that is only virtual (Debian 12's libdw1 on Debian 13 and later) means
    # the package that provides it, as apt-get install would take it.
    named = [
        w if w.name in candidates else _Wanted(w.requested, archive.sole_provider(w.name))
        for w in named
    ]
    providers = [wanted.name for wanted in named if wanted.name not in candidates]
    if providers:  # asked once more for the providers only, not the whole batch
        candidates |= archive.candidates(providers)
    libraries = [wanted for wanted in batch if wanted.library_of]
    if libraries:
        found = archive.candidates([wanted.name for wanted in libraries], missing_ok=True)
        candidates |= found
        libraries = [wanted for wanted in libraries if wanted.name in found
                     and archive.sections.get(wanted.name) in LIBRARY_SECTIONS]  # fmt: skip
    chosen = named + libraries
    paths = archive.download([(wanted.name, candidates[wanted.name][0]) for wanted in chosen],
                             progress)  # fmt: skip
    fetched, pending = [], []
    for wanted, path in zip(chosen, paths, strict=True):
        version, depends = candidates[wanted.name]
        if not wanted.library_of and package_is_empty(path):
            pending += [_Wanted(wanted.requested, dependency) for dependency in depends]
            continue
        fetched.append(FetchedPackage(wanted.requested, wanted.name, version, path,
                                      wanted.library_of))  # fmt: skip
        pending += [_Wanted(wanted.requested, dependency, wanted.library_of or wanted.name)
                    for dependency in depends]  # fmt: skip
    return fetched, pending


def _load_resolution(memo: Path) -> list[FetchedPackage] | None:
    """A previous resolution of the same names against the same package lists."""
    try:
        rows: Any = load_json_entry(memo)
        fetched = [
            FetchedPackage(
                row["requested"], row["name"], row["version"], Path(row["path"]), row["library_of"]
            )
            for row in rows
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return fetched if all(package.path.is_file() for package in fetched) else None


def _store_resolution(memo: Path, fetched: Sequence[FetchedPackage]) -> None:
    rows = [
        {
            "requested": p.requested,
            "name": p.name,
            "version": p.version,
            "path": str(p.path),
            "library_of": p.library_of,
        }
        for p in fetched
    ]
    store_cache_entry(memo, json.dumps(rows).encode())
