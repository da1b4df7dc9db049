"""A root directory for a foreign-architecture guest: Debian's Python, our dependencies, tools.

The arm64 and riscv64 VM tests run the project's own `kdump-build load`
inside the guest, and the host reads the guest's vmcore with that
architecture's makedumpfile under qemu-user. Both need its userspace; this
builds it once per package set and caches it (`ROOTS` says what goes in):

- arm64: Debian 12 packages (python3.11 and its libraries, libarchive,
  busybox, makedumpfile and its libraries), and the project's runtime
  dependencies as PyPI wheels for that architecture and Python (`pip
  download --platform`, at the versions of this venv; Debian 12's own
  python3-typer, -zstandard, -libarchive-c are too old);
- riscv64: Debian 13 packages only, its python3 3.13 with its own
  python3-typer, -zstandard, -libarchive-c and -lz4: the project must run on
  the versions Debian 13 ships (pyproject.toml's floors);
- byte code for the standard library and the dependencies, compiled here
  (the guest's 9p share is read-only and compiling under TCG costs seconds
  per command): by this Python where it is the guest's version, else by the
  guest's own Python under qemu-user.

The packages are fetched with `builder.image.fetch` (the release a root
names through `source.release`'s private apt state) and unpacked with
dpkg-deb. The root is a cache entry under `~/.cache/kdump-build/guest-roots/`,
named by a hash of the .deb files and wheels; it is built in a temporary
directory beside it and renamed into place, so a killed build leaves nothing.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.metadata
import os
import platform
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
from builder.locks import locked_file

# Inside the root: the unpacked wheels (on PYTHONPATH in the guest).
WHEELS = "usr/local/lib/kdump-build-wheels"
# The project's runtime dependencies (pyproject.toml), pinned to this venv's versions.
DEPENDENCIES = ("libarchive-c", "zstandard", "typer", "lz4")
_LAYOUT_VERSION = "1"  # bump when the way a root is assembled changes

# The C libraries every root needs: Python's, libarchive's (libarchive-c loads it),
# makedumpfile's.
_LIBRARIES = ("libc6", "libgcc-s1", "zlib1g", "libexpat1", "libffi8", "liblzma5", "libbz2-1.0",
              "libzstd1", "libuuid1", "libncursesw6", "libtinfo6", "libsqlite3-0", "media-types",
              "libacl1", "liblz4-1", "libxml2", "liblzo2-2")  # fmt: skip

# Debian 12 packages: Python, libarchive, the shell and makedumpfile with their libraries.
BOOKWORM_PACKAGES = (
    *_LIBRARIES, "libstdc++6", "libssl3", "libcrypt1", "libdb5.3", "libreadline8", "libnsl2",
    "libtirpc3", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "python3.11", "libarchive13", "libnettle8", "libicu72", "busybox-static", "makedumpfile",
    "libdw1", "libelf1",
)  # fmt: skip

# Debian 13 packages: the same, merged-/usr (base-files has the /bin, /lib, /sbin links),
# and Python's own packages of our dependencies with theirs.
TRIXIE_PACKAGES = (
    *_LIBRARIES, "base-files", "libssl3t64", "libdb5.3t64", "libreadline8t64", "netbase",
    "python3.13-minimal", "libpython3.13-minimal", "libpython3.13-stdlib", "python3.13",
    "python3-minimal", "python3", "libpython3-stdlib", "libarchive13t64", "libnettle8t64",
    "libxxhash0", "busybox-static", "makedumpfile", "libdw1t64", "libelf1t64",
    "python3-typer", "python3-click", "python3-rich", "python3-shellingham",
    "python3-typing-extensions", "python3-markdown-it", "python3-mdurl", "python3-linkify-it",
    "python3-uc-micro", "python3-pygments", "python3-zstandard", "python3-cffi-backend",
    "python3-libarchive-c", "python3-lz4",
)  # fmt: skip


@dataclass(frozen=True)
class RootSpec:
    """What a guest root of one architecture is made of."""

    release: str  # the Debian release of its packages ("": the host's, Debian 12)
    python_version: str
    packages: tuple[str, ...]
    wheel_platform: str | None  # pip's manylinux platform for the wheels; None: no wheels
    # The main side's initrd (busybox, beside the kernel's modules), from the same release.
    initrd_packages: tuple[str, ...] = ("busybox-static",)

    @property
    def python(self) -> str:
        return f"/usr/bin/python{self.python_version}"

    @property
    def site_packages(self) -> tuple[str, ...]:
        """Where its Python's dependencies are, inside the root."""
        return (WHEELS,) if self.wheel_platform else ("usr/lib/python3/dist-packages",)


ROOTS = {
    Arch.AARCH64: RootSpec("", "3.11", BOOKWORM_PACKAGES, "manylinux2014_aarch64"),
    Arch.RISCV64: RootSpec(
        "trixie", "3.13", TRIXIE_PACKAGES, None, ("busybox-static", "base-files")
    ),
}


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
        wheels = f"/{WHEELS}:" if ROOTS[self.arch].wheel_platform else ""
        return {
            "PYTHONPATH": f"{wheels}{repo}",
            "LIBARCHIVE": self.libarchive,
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": "/tmp",
        }


def guest_root(arch: Arch) -> GuestRoot:
    """The cached root for `arch`, built first if needed."""
    spec = ROOTS[arch]
    fetched = fetch_packages(spec.packages, arch, release=spec.release)
    debs = sorted(package.path for package in fetched)
    wheels = _wheels(arch, spec)
    digest = hashlib.sha256(_LAYOUT_VERSION.encode())
    for path in [*debs, *wheels]:
        digest.update(path.name.encode() + b"\0")
    home = default_cache_dir() / "guest-roots"
    root = home / f"{arch.value}-{digest.hexdigest()[:16]}"
    if not root.is_dir():
        # Test workers that want the same root at once build it once, in turn.
        with locked_file(home / f"{root.name}.lock"):
            _build_root(root, arch, debs, wheels, spec)
    return GuestRoot(root, arch)


def _build_root(
    root: Path, arch: Arch, debs: list[Path], wheels: list[Path], spec: RootSpec
) -> None:
    """Assemble `root` in a staging directory beside it, unless it is there already."""
    home = root.parent
    if not root.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=home))
        try:
            _assemble(staging, debs, wheels, spec)
            _compile(staging, arch, spec)
            staging.rename(root)
        except (OSError, subprocess.CalledProcessError):
            shutil.rmtree(staging, ignore_errors=True)
            if not root.is_dir():  # another run may have built the same root meanwhile
                raise


def _wheels(arch: Arch, spec: RootSpec) -> list[Path]:
    """The dependency wheels for `arch` and Debian's Python, downloaded once into the cache."""
    if spec.wheel_platform is None:
        return []
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DEPENDENCIES]
    version = spec.python_version.replace(".", "")
    target = default_cache_dir() / "wheels" / f"{arch.value}-cp{version}"
    stamp = target / ("pins-" + hashlib.sha256(" ".join(pins).encode()).hexdigest()[:16])
    if stamp.exists():
        return [target / name for name in stamp.read_text().split()]
    with locked_file(target / ".download.lock"):  # workers downloading the same wheels
        _download_wheels(target, stamp, spec, pins)
    return [target / name for name in stamp.read_text().split()]


def _download_wheels(target: Path, stamp: Path, spec: RootSpec, pins: list[str]) -> None:
    """pip download `pins` into `target` and write `stamp` (last, whole), unless there."""
    assert spec.wheel_platform is not None
    if not stamp.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
             "--platform", spec.wheel_platform, "--python-version", spec.python_version,
             "--implementation", "cp", "-d", str(target), *pins],
            check=True,
        )  # fmt: skip
        wanted = sorted(path.name for path in target.glob("*.whl"))
        staging = stamp.with_name(f".{stamp.name}.tmp")
        staging.write_text("\n".join(wanted) + "\n")
        os.replace(staging, stamp)


def _assemble(root: Path, debs: list[Path], wheels: list[Path], spec: RootSpec) -> None:
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # Debian 12's base-files makes /bin, /sbin, /lib links into /usr (merged /usr);
    # Debian 13's packages are merged already and base-files brings the links.
    for name in ("bin", "sbin", "lib"):
        top = root / name
        if top.is_dir() and not top.is_symlink():
            shutil.copytree(top, root / "usr" / name, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(top)
        if not top.exists() and not top.is_symlink():
            top.symlink_to(f"usr/{name}")
    busybox = root / "usr" / "bin" / "busybox"
    for applet in ("sh", "env", "cat", "ls", "mount"):
        link = root / "usr" / "bin" / applet
        if not link.exists():
            link.symlink_to(busybox.name)
    python3 = root / "usr" / "bin" / "python3"
    if not python3.exists():
        python3.symlink_to(Path(spec.python).name)
    for directory in ("proc", "sys", "dev", "tmp", "run", "work"):
        (root / directory).mkdir(exist_ok=True)
    if wheels:
        site = root / WHEELS
        site.mkdir(parents=True)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)


def _compile(root: Path, arch: Arch, spec: RootSpec) -> None:
    """Byte code for the standard library and the dependencies; the sources never change."""
    trees = [root / "usr" / "lib" / f"python{spec.python_version}",
             *(root / site for site in spec.site_packages)]  # fmt: skip
    if platform.python_version().startswith(spec.python_version + "."):
        for tree in trees:
            compileall.compile_dir(tree, quiet=1, workers=0, stripdir=str(root), prependdir="/")
        return
    # The guest's Python under qemu-user, one process (its workers' fd passing fails
    # there). Paths under `root` are named in full: qemu-user looks a path up inside
    # its prefix first, and none of these exists there twice.
    machine = ARCHES[arch].qemu
    assert machine is not None, f"no qemu-user for {arch}"
    subprocess.run(
        [machine.user, "-L", str(root), str(root) + spec.python, "-m", "compileall", "-q",
         "-s", str(root), "-p", "/", *map(str, trees)],
        check=True, capture_output=True,
    )  # fmt: skip
