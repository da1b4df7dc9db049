"""A root directory for a foreign-architecture guest: Debian's Python, our dependencies, tools.

The arm64 VM tests run the project's own `kdump-build load` inside an arm64
guest, and the host reads the guest's vmcore with an arm64 makedumpfile
under qemu-user. Both need arm64 userspace; this builds it once per package
set and caches it:

- Debian 12 packages for the architecture (python3.11 and its libraries,
  libarchive, busybox, makedumpfile and its libraries), fetched with
  `builder.image.fetch` and unpacked with dpkg-deb;
- the project's runtime dependencies as PyPI wheels for that architecture
  and Python (`pip download --platform`), at the versions installed in this
  venv, unpacked into `WHEELS` (Debian 12's own python3-typer, -zstandard,
  -libarchive-c are too old);
- byte code for both, compiled here (the guest's 9p share is read-only and
  compiling under TCG costs seconds per command).

The root is a cache entry under `~/.cache/kdump-build/guest-roots/`, named
by a hash of the .deb files and wheels; it is built in a temporary
directory beside it and renamed into place, so a killed build leaves nothing.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from builder.arch import ARCHES, Arch
from builder.image.cache import default_cache_dir
from builder.image.fetch import fetch_packages

# Inside the root: the unpacked wheels (on PYTHONPATH in the guest).
WHEELS = "usr/local/lib/kdump-build-wheels"
PYTHON = "/usr/bin/python3.11"
PYTHON_VERSION = "3.11"  # Debian 12's
# The project's runtime dependencies (pyproject.toml), pinned to this venv's versions.
DEPENDENCIES = ("libarchive-c", "zstandard", "typer", "lz4")
# pip's name for the manylinux platform of each architecture.
WHEEL_PLATFORMS = {Arch.AARCH64: "manylinux2014_aarch64"}
_LAYOUT_VERSION = "1"  # bump when the way a root is assembled changes

# Debian 12 packages: Python, libarchive (libarchive-c loads it), the shell and
# makedumpfile with their libraries.
PACKAGES = (
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libssl3",
    "liblzma5", "libbz2-1.0", "libzstd1", "libuuid1", "libcrypt1", "libdb5.3",
    "libncursesw6", "libtinfo6", "libreadline8", "libnsl2", "libtirpc3", "libsqlite3-0",
    "media-types",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11",
    "libarchive13", "libacl1", "liblz4-1", "libnettle8", "libxml2", "libicu72",
    "busybox-static",
    "makedumpfile", "libdw1", "libelf1", "liblzo2-2",
)  # fmt: skip


@dataclass(frozen=True)
class GuestRoot:
    """A built root: where it is, and what a guest needs to run Python in it."""

    path: Path
    arch: Arch

    @property
    def libarchive(self) -> str:
        """libarchive-c finds its library with ldconfig's cache, which the root has not."""
        return f"/usr/lib/{ARCHES[self.arch].multiarch}/libarchive.so.13"

    def environment(self, repo: Path) -> dict[str, str]:
        """The variables a command in the chrooted guest needs to import the project."""
        return {
            "PYTHONPATH": f"/{WHEELS}:{repo}",
            "LIBARCHIVE": self.libarchive,
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": "/tmp",
        }


def guest_root(arch: Arch) -> GuestRoot:
    """The cached root for `arch`, built first if needed."""
    debs = sorted(package.path for package in fetch_packages(PACKAGES, arch))
    wheels = _wheels(arch)
    digest = hashlib.sha256(_LAYOUT_VERSION.encode())
    for path in [*debs, *wheels]:
        digest.update(path.name.encode() + b"\0")
    home = default_cache_dir() / "guest-roots"
    root = home / f"{arch.value}-{digest.hexdigest()[:16]}"
    if not root.is_dir():
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=home))
        try:
            _assemble(staging, debs, wheels)
            staging.rename(root)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not root.is_dir():  # another run may have built the same root meanwhile
                raise
    return GuestRoot(root, arch)


def _wheels(arch: Arch) -> list[Path]:
    """The dependency wheels for `arch` and Debian's Python, downloaded once into the cache."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DEPENDENCIES]
    target = default_cache_dir() / "wheels" / f"{arch.value}-cp{PYTHON_VERSION.replace('.', '')}"
    stamp = target / ("pins-" + hashlib.sha256(" ".join(pins).encode()).hexdigest()[:16])
    if not stamp.exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
             "--platform", WHEEL_PLATFORMS[arch], "--python-version", PYTHON_VERSION,
             "--implementation", "cp", "-d", str(target), *pins],
            check=True,
        )  # fmt: skip
        wanted = sorted(path.name for path in target.glob("*.whl"))
        stamp.write_text("\n".join(wanted) + "\n")
    return [target / name for name in stamp.read_text().split()]


def _assemble(root: Path, debs: list[Path], wheels: list[Path]) -> None:
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # Debian 12's base-files makes /bin, /sbin, /lib links into /usr (merged /usr).
    for name in ("bin", "sbin", "lib"):
        top = root / name
        if top.is_dir() and not top.is_symlink():
            shutil.copytree(top, root / "usr" / name, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(top)
        if not top.exists():
            top.symlink_to(f"usr/{name}")
    busybox = root / "usr" / "bin" / "busybox"
    for applet in ("sh", "env", "cat", "ls", "mount"):
        link = root / "usr" / "bin" / applet
        if not link.exists():
            link.symlink_to(busybox.name)
    (root / "usr" / "bin" / "python3").symlink_to("python3.11")
    for directory in ("proc", "sys", "dev", "tmp", "run", "work"):
        (root / directory).mkdir(exist_ok=True)
    site = root / WHEELS
    site.mkdir(parents=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    # Byte code for the standard library and the wheels; the sources never change.
    for tree in (root / "usr" / "lib" / f"python{PYTHON_VERSION}", site):
        compileall.compile_dir(tree, quiet=1, workers=0, stripdir=str(root), prependdir="/")
