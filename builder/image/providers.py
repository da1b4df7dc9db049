"""Which Debian package provides a shared library the build could not find.

Debian names a library's package after its soname (Policy 8.1): `libfoo.so.1`
is in `libfoo1`, and a hyphen separates two numbers, `liblzo2.so.2` in
`liblzo2-2`. Many packages keep older names (zlib1g for libz.so.1), so a name
is only said once the private apt state has that package and its file list
holds the soname; otherwise the message says no package was found.
"""

from __future__ import annotations

import posixpath
import re

from builder.arch import arch_info
from builder.errors import FetchError, MissingLibraryError, SourceError
from builder.image.cache import default_cache_dir
from builder.image.fetch import AptArchive
from builder.image.packages import PackageRoot
from builder.image.suites import split_pick
from builder.recipe.model import Recipe

_SONAME = re.compile(r"^(?P<name>[A-Za-z0-9_.+-]+?)\.so\.(?P<version>[0-9][0-9.]*)$")


def library_package(soname: str) -> str | None:
    """Debian's name for the package of `soname`, or None for a soname of another form.

    >>> library_package("liblzo2.so.2"), library_package("libelf.so.1")
    ('liblzo2-2', 'libelf1')
    >>> library_package("libstdc++.so.6"), library_package("libfoo-1.2.so")
    ('libstdc++6', None)
    """
    match = _SONAME.match(soname)
    if match is None:
        return None
    name, version = match["name"].lower().replace("_", "-"), match["version"]
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def provider_line(recipe: Recipe, soname: str) -> str | None:
    """What to add to source.packages for `soname`, or that no package was found;
    None when the recipe fetches nothing through apt (a host or sysroot)."""
    source = recipe.source
    if source.root or not source.packages:
        return None
    missing = f"no package found for {soname}"
    package = library_package(soname)
    if package is None:
        return f"{missing} (its name is not of the form libNAME.so.N)"
    picks = [suite for _, suite in map(split_pick, source.packages) if suite]
    target = arch_info(recipe.target.arch)
    archive = AptArchive(default_cache_dir(), target.debian, source.release, suites=picks)
    try:
        with archive.locked():
            archive.update()
            found = archive.candidates([package], missing_ok=True)
            if package not in found:
                return f"{missing} ({package} is not a package for {archive.describe})"
            (deb,) = archive.download([(package, found[package][0])])
    except FetchError as error:
        return f"{missing} (apt: {error})"
    directories = (f"/lib/{target.multiarch}", f"/usr/lib/{target.multiarch}", "/lib", "/usr/lib")
    try:
        root = PackageRoot([deb])
        held = [path for path in (posixpath.join(directory, soname) for directory in directories)
                if root.exists(path)]  # fmt: skip
    except SourceError as error:
        return f"{missing} ({deb.name}: {error})"
    if not held:
        return f"{missing} ({package} {found[package][0]} does not hold it)"
    return f"add {package} to source.packages (it holds {held[0]})"


def with_provider(recipe: Recipe, error: MissingLibraryError) -> MissingLibraryError:
    """The error, with the recipe's file and the package to add, when the recipe uses apt."""
    line = provider_line(recipe, error.soname)
    if line is None:
        return error
    return MissingLibraryError(f"{recipe.path}: {error}: {line}", error.soname)
