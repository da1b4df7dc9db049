"""kdump-load: the static loader for devices without Python (C source here, prebuilt).

scripts/build-kdump-load builds `kdump-load-<arch>` from this directory's
C files (plus ../purgatory/sha256.c) with Debian's gcc and cross compilers;
each binary is shipped beside a `.toolchain` file naming the gcc and ld that
made it. It reads the build's kdump-load.plan (builder/kexec/plan/) and
completes it with the live memory map and sysfs values.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from builder.arch import Arch

__all__ = ["loader_name", "shipped_loader"]


def loader_name(arch: Arch) -> str:
    """The shipped binary's file name.

    >>> loader_name(Arch.X86_64)
    'kdump-load-x86_64'
    """
    return f"kdump-load-{arch.value}"


def shipped_loader(arch: Arch) -> Path:
    """The prebuilt kdump-load for `arch`, in the installed package."""
    return Path(str(resources.files(__name__) / loader_name(arch)))
