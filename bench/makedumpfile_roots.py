"""Each Debian release's makedumpfile, runnable on this host from its own packages.

The binary and its library closure (found with the project's own planner, as
an initrd gets them) are copied flat into one directory per release and run
through that release's ld.so with `--library-path`, so Debian 13's 1.7.6 links
Debian 13's libzstd, not the host's. Nothing is installed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder.arch import Arch
from builder.image.fetch import fetch_packages
from builder.image.libraries import library_closure
from builder.image.packages import PackageRoot

ROOTS = Path.home() / ".cache" / "kdump-build" / "bench-makedumpfile"
BINARY = "/usr/bin/makedumpfile"
# Debian release -> the `source.release` that fetches it ("": the host's, Debian 12).
# sid had the same 1.7.8 as forky on 2026-12-06.
RELEASES = {"bookworm": "", "trixie": "trixie", "forky": "forky"}
# `makedumpfile -v` lists each optional compression as "NAME<tab>enabled|disabled".
_ENABLED = re.compile(r"^(lzo|snappy|zstd)\s+enabled$", re.MULTILINE)


@dataclass(frozen=True)
class MakedumpfileRoot:
    """One release's makedumpfile with its libraries, in `directory`."""

    release: str
    directory: Path
    interpreter: str  # the ld.so's file name in `directory`
    packages: tuple[str, ...]  # "name version" of every package it came from

    def command(self) -> list[str]:
        """The command line prefix that runs this makedumpfile."""
        return [str(self.directory / self.interpreter), "--library-path", str(self.directory),
                str(self.directory / "makedumpfile")]  # fmt: skip

    def version_text(self) -> str:
        command = [*self.command(), "-v"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        return (result.stdout + result.stderr).strip()

    @property
    def compressions(self) -> tuple[str, ...]:
        """The page compressions it is measured with: none, zlib, and lzo, zstd if built in."""
        enabled = set(_ENABLED.findall(self.version_text()))
        return tuple(name for name in ("none", "lzo", "zlib", "zstd")
                     if name in ("none", "zlib") or name in enabled)  # fmt: skip

    def record(self) -> dict[str, object]:
        return {
            "version": self.version_text().splitlines()[0],
            "packages": list(self.packages),
            "compressions": list(self.compressions),
        }


def prepare_root(release: str) -> MakedumpfileRoot:
    """Fetch `release`'s makedumpfile (with the libraries it depends on) and lay it out.

    The directory is named after the packages and appears whole (laid out beside it,
    then renamed): test workers running in parallel read it while another lays it out.
    """
    # base-files: a merged-/usr release's /lib64 link, through which the ld.so is named.
    fetched = fetch_packages(["makedumpfile", "base-files"], Arch.X86_64, release=RELEASES[release])
    packages = tuple(sorted(f"{package.name} {package.version}" for package in fetched))
    digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:12]
    directory = ROOTS / f"{release}-{digest}"
    root = PackageRoot([package.path for package in fetched])
    names = [BINARY, *library_closure(root, [BINARY], Arch.X86_64, "bench")]
    interpreter = next((path.rsplit("/", 1)[1] for path in names
                        if path.rsplit("/", 1)[1].startswith("ld-linux")), "")  # fmt: skip
    if not interpreter:
        raise RuntimeError(f"{release}: no ld.so in makedumpfile's library closure")
    if not directory.is_dir():
        ROOTS.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=ROOTS))
        for path in names:
            target = staging / path.rsplit("/", 1)[1]
            target.write_bytes(root.read_bytes(path))
            target.chmod(0o755)
        try:
            staging.rename(directory)
        except OSError:  # another process laid out the same packages first
            shutil.rmtree(staging)
    return MakedumpfileRoot(release, directory, interpreter, packages)
