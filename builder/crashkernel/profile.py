"""The capture profile of a build: what the capture kernel and initrd take in memory.

`capture_profile` reads the facts of a planned build (kernel footprint,
initrd sizes and decoder workspace, CPUs the capture kernel brings up, dump
target, collector) into the `CaptureProfile` the memory model estimates.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from typing import Protocol

from builder.binfmt.cpio import segments
from builder.binfmt.kernelimg import KernelImage
from builder.compression import decoder_workspace
from builder.crashkernel.model import CaptureProfile, default_calibration
from builder.recipe.model import Collector, Recipe
from builder.units import page_up


class InitrdEntry(Protocol):
    """What the profile reads of an initrd member (`builder.image.initrd.Member`)."""

    @property
    def data(self) -> bytes: ...

    @property
    def st_mode(self) -> int: ...


def unpacked_size(members: Sequence[InitrdEntry]) -> int:
    """Bytes the unpacked initrd holds in the rootfs (tmpfs keeps whole pages per file).

    >>> from builder.image.initrd import InitrdPlan
    >>> plan = InitrdPlan()
    >>> plan.file("/a", b"x" * 5000)
    >>> plan.file("/b", b"y")
    >>> unpacked_size(list(plan.members()))
    12288
    """
    # Symlink targets and directories live in inodes, not pages (short ones at least).
    return sum(page_up(len(member.data)) for member in members if stat.S_ISREG(member.st_mode))


def initrd_decoder_workspace(initrd: bytes) -> tuple[int, str]:
    """Bytes the kernel allocates to unpack ``initrd``: the largest over its streams.

    The kernel unpacks the archives one after the other and frees each
    decoder before the next; `builder.compression.decoder_workspace` says
    what one stream takes.

    >>> from builder.binfmt.cpio import write_cpio
    >>> from builder.compression import Compression, compress
    >>> stream = compress(bytes(4 << 20), Compression.ZSTD, 19)
    >>> size, what = initrd_decoder_workspace(write_cpio([]) + stream)
    >>> size > 4 << 20, what
    (True, 'zstd window 4M')
    >>> initrd_decoder_workspace(write_cpio([]))
    (0, 'uncompressed')
    """
    # segments() decodes every stream, so their headers are known to be readable.
    streams = [initrd[part.start : part.end] for part in segments(initrd) if part.compressed]
    return max(map(decoder_workspace, streams), default=(0, "uncompressed"))


def capture_cpus(cmdline: str) -> int:
    """CPUs the capture kernel brings up: the last ``nr_cpus=`` (or ``maxcpus=``), else 1.

    >>> capture_cpus("irqpoll nr_cpus=1 reset_devices"), capture_cpus("maxcpus=2 nr_cpus=4")
    (1, 4)
    """
    found: dict[str, int] = {}
    for word in cmdline.split():
        name, _, value = word.partition("=")
        if name in ("nr_cpus", "maxcpus") and value.isdigit():
            found[name] = int(value)  # the last one wins, as in the kernel
    # nr_cpus= caps the possible CPUs (per-CPU areas); maxcpus= only those booted.
    return max(1, found.get("nr_cpus", found.get("maxcpus", 1)))


def capture_profile(
    recipe: Recipe, kernel: KernelImage, cmdline: str, members: Sequence[InitrdEntry], initrd: bytes
) -> CaptureProfile:
    """The capture a build produced, as the memory model sees it."""
    memory_size = kernel.kernel.placement.memory_size
    if memory_size is None:
        # Without init_size/image_size the decompressed image is the best lower bound.
        memory_size = kernel.kernel.decompressed_size or kernel.kernel.file_size
    calibration = default_calibration()
    return CaptureProfile(
        kernel_memory_size=memory_size,
        initrd_compressed_size=len(initrd),
        initrd_unpacked_size=unpacked_size(members),
        initrd_decompressor_size=initrd_decoder_workspace(initrd)[0],
        cpus=capture_cpus(cmdline),
        # With fallback targets, the one that needs the most buffers.
        dump_target=max(
            (item.target for item in recipe.dump.attempts()), key=calibration.target
        ).name,
        makedumpfile=recipe.dump.collector is Collector.MAKEDUMPFILE,
    )
