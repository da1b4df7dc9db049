"""A minimal capture kernel built from Debian's linux-source with bench/minimal-kernel.config.

    .venv/bin/python -m bench.minimal_kernel     # build, or say where the cached build is

`make allnoconfig KCONFIG_ALLCONFIG=bench/minimal-kernel.config`, a check that
every option the fragment sets survived Kconfig's dependencies, then
`make bzImage` on all CPUs at low priority. A build takes a while on 2 cores,
so the result is cached under ~/.cache/kdump-build/bench/minimal-kernel/<key>/,
keyed by the linux-source package's version and the fragment's sha256, and
wrapped as a tar "package" holding /boot/vmlinuz-<release> and
/boot/config-<release>, which a recipe names in source.package_files. The
build tools (flex, bison, libelf-dev) are installed here when missing.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from builder.binfmt.kernelimg import parse_kernel_image
from builder.image.cache import default_cache_dir
from builder.image.fetch import fetch_packages
from builder.units import MiB

FRAGMENT = Path(__file__).with_name("minimal-kernel.config")
SOURCE_PACKAGE = "linux-source"  # the metapackage of the current linux-source-<series>
BUILD_PACKAGES = ("flex", "bison", "libelf-dev", "bc", "make", "gcc", "xz-utils")
# Reproducible build stamps (the kernel's Documentation/kbuild/reproducible-builds.rst).
BUILD_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "1970-01-01",
    "KBUILD_BUILD_USER": "kdump-build",
    "KBUILD_BUILD_HOST": "bench",
}


@dataclass(frozen=True)
class MinimalKernel:
    """The cached build: the image, its config, the package wrapping both, and facts."""

    directory: Path
    release: str
    source_version: str
    build_seconds: float

    @property
    def image(self) -> Path:
        return self.directory / "bzImage"

    @property
    def config(self) -> Path:
        return self.directory / "config"

    @property
    def package(self) -> Path:
        return self.directory / f"linux-image-{self.release}.tar"

    @property
    def init_size(self) -> int:
        size = parse_kernel_image(self.image.read_bytes(), str(self.image)).placement.memory_size
        assert size is not None, "a bzImage always has init_size"
        return size


def fragment_options(text: str) -> dict[str, str]:
    """The `CONFIG_X=value` lines of a fragment (comments and blanks skipped).

    >>> fragment_options('# c\\nCONFIG_A=y\\nCONFIG_B="x"\\n')
    {'CONFIG_A': 'y', 'CONFIG_B': '"x"'}
    """
    options = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            options[name] = value
    return options


def missing_options(fragment: str, config: str) -> list[str]:
    """Options the fragment sets to y that the final .config does not have set to y.

    >>> missing_options("CONFIG_A=y\\nCONFIG_B=y\\n", "CONFIG_A=y\\n# CONFIG_B is not set\\n")
    ['CONFIG_B']
    """
    final = fragment_options(config)
    return [name for name, value in fragment_options(fragment).items()
            if value == "y" and final.get(name) != "y"]  # fmt: skip


def _run(command: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(
            command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
            env={**os.environ, **BUILD_ENV}, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{tail}")


def ensure_build_tools() -> None:
    missing = [
        name
        for name in BUILD_PACKAGES
        if subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True,
                          text=True, check=False).stdout != "install ok installed"
    ]  # fmt: skip
    if missing:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=True,
        )  # fmt: skip


def cache_key(source_version: str, fragment: bytes) -> str:
    """What the build depends on: the source package's version and the fragment.

    >>> cache_key("6.1.192-3", b"CONFIG_A=y\\n")[:12]
    '6.1.192-3-e7'
    """
    return f"{source_version}-{hashlib.sha256(fragment).hexdigest()[:16]}"


def cached_build(directory: Path) -> MinimalKernel | None:
    try:
        release, version, seconds = (directory / "release").read_text().split()
    except (OSError, ValueError):
        return None
    kernel = MinimalKernel(directory, release, version, float(seconds))
    return kernel if kernel.image.is_file() and kernel.package.is_file() else None


def minimal_kernel(cache: Path | None = None) -> MinimalKernel:
    """The minimal kernel for this linux-source version and fragment, built if not cached."""
    (source,) = fetch_packages([SOURCE_PACKAGE], "x86_64")
    fragment = FRAGMENT.read_bytes()
    root = (cache or default_cache_dir()) / "bench" / "minimal-kernel"
    directory = root / cache_key(source.version, fragment)
    found = cached_build(directory)
    if found is not None:
        return found
    ensure_build_tools()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix="build.") as scratch:
        work = Path(scratch)
        start = time.monotonic()
        release = _build(source.path, work)
        seconds = time.monotonic() - start
        output = work / "out"
        output.mkdir()
        shutil.copy(work / "src/arch/x86/boot/bzImage", output / "bzImage")
        shutil.copy(work / "src/.config", output / "config")
        shutil.copy(work / "build.log", output / "build.log")
        _write_package(output / f"linux-image-{release}.tar", release, output)
        (output / "release").write_text(f"{release} {source.version} {seconds:.0f}\n")
        shutil.rmtree(directory, ignore_errors=True)
        output.rename(directory)
    built = cached_build(directory)
    assert built is not None
    return built


def _build(source_deb: Path, work: Path) -> str:
    """Unpack linux-source, configure from the fragment, build bzImage; return the release."""
    log = work / "build.log"
    unpacked = work / "deb"
    _run(["dpkg-deb", "-x", str(source_deb), str(unpacked)], log)
    (tarball,) = sorted((unpacked / "usr/src").glob("linux-source-*.tar.*"))
    src = work / "src"
    src.mkdir()
    _run(["tar", "-xf", str(tarball), "-C", str(src), "--strip-components=1"], log)
    shutil.rmtree(unpacked)
    make = ["nice", "-n", "10", "make", "-C", str(src), "ARCH=x86_64"]
    _run([*make, "allnoconfig", f"KCONFIG_ALLCONFIG={FRAGMENT}"], log)
    missing = missing_options(FRAGMENT.read_text(), (src / ".config").read_text())
    if missing:
        sys.exit(f"{FRAGMENT}: Kconfig dropped {', '.join(missing)} (unmet dependencies)")
    _run([*make, f"-j{os.cpu_count() or 1}", "bzImage"], log)
    release = subprocess.run(
        [*make[3:], "-s", "kernelrelease"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return release


def _write_package(path: Path, release: str, output: Path) -> None:
    """A tar package of /boot/vmlinuz-<release> and /boot/config-<release> (fixed metadata)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        directory = tarfile.TarInfo("boot")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(directory)
        for name, source in ((f"vmlinuz-{release}", "bzImage"), (f"config-{release}", "config")):
            data = (output / source).read_bytes()
            info = tarfile.TarInfo(f"boot/{name}")
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))


def main() -> None:
    kernel = minimal_kernel()
    print(f"minimal capture kernel {kernel.release} (linux-source {kernel.source_version})")
    print(f"  image     {kernel.image} ({kernel.image.stat().st_size / MiB:.2f} MiB)")
    print(f"  init_size {kernel.init_size / MiB:.2f} MiB")
    print(f"  package   {kernel.package}")
    print(f"  built in  {kernel.build_seconds:.0f} s (cached after)")


if __name__ == "__main__":
    main()
