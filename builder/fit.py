"""The fit step of a build: what the capture consists of, judged against the reservation.

`capture_profile` reads the facts of a planned build (kernel footprint,
initrd sizes, CPUs the capture kernel brings up, dump target, collector);
`fit_recipe` turns them into a `FitReport` for the recipe's RAM sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.crashkernel import (
    DEFAULT_CALIBRATION,
    Calibration,
    CaptureProfile,
    FitReport,
    fit,
    parse_size,
)
from builder.errors import RecipeError
from builder.initrd import Member, MemberKind
from builder.kernelimg import KernelImage
from builder.recipe import Recipe

PAGE_SIZE = 4096


def unpacked_size(members: Sequence[Member]) -> int:
    """Bytes the unpacked initrd holds in the rootfs (tmpfs keeps whole pages per file).

    >>> from builder.initrd import InitrdPlan
    >>> plan = InitrdPlan()
    >>> plan.file("/a", b"x" * 5000)
    >>> plan.file("/b", b"y")
    >>> unpacked_size(list(plan.members()))
    12288
    """
    total = 0
    for member in members:
        # Symlink targets and directories live in inodes, not pages (short ones at least).
        if member.kind is MemberKind.FILE:
            total += -(-len(member.data) // PAGE_SIZE) * PAGE_SIZE
    return total


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
    recipe: Recipe, kernel: KernelImage, cmdline: str, members: Sequence[Member], initrd: bytes
) -> CaptureProfile:
    """The capture a build produced, as the memory model sees it."""
    memory_size = kernel.kernel.memory_size
    if memory_size is None:
        # Without init_size/image_size the decompressed image is the best lower bound.
        memory_size = kernel.kernel.decompressed_size or kernel.kernel.file_size
    return CaptureProfile(
        kernel_memory_size=memory_size,
        initrd_compressed_size=len(initrd),
        initrd_unpacked_size=unpacked_size(members),
        cpus=capture_cpus(cmdline),
        dump_target=recipe.dump.target,
        makedumpfile=recipe.dump.collector == "makedumpfile",
    )


def ram_sizes(values: Sequence[str], where: str) -> list[int]:
    """Parse RAM sizes (``4G``, ``1536M``); each must be positive.

    >>> ram_sizes(["1G", "64G"], "--ram")
    [1073741824, 68719476736]
    """
    sizes = []
    for index, value in enumerate(values):
        label = where if len(values) == 1 else f"{where} item {index}"
        size = parse_size(value, where=label)
        if size <= 0:
            raise RecipeError(f"{label}: RAM size must be positive, got {value!r}")
        sizes.append(size)
    return sizes


def fit_recipe(
    recipe: Recipe,
    profile: CaptureProfile,
    *,
    spec: str | None = None,
    rams: Sequence[int] | None = None,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> FitReport:
    """The recipe's fit: ``spec`` and ``rams`` override crashkernel.reserve and crashkernel.ram."""
    where = f"{recipe.path}: crashkernel.ram"
    sizes = list(rams) if rams else ram_sizes(recipe.crashkernel.ram, where)
    return fit(
        spec if spec is not None else recipe.crashkernel.reserve,
        sizes,
        profile,
        arch=recipe.target.arch,
        calibration=calibration,
    )
