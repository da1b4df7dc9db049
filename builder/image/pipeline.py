"""The build: a straight list of named steps from a recipe to an output directory.

Planning (`plan_build`) reads sources and returns everything to write as data;
builder.image.outputs writes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from builder.arch import arch_info
from builder.binfmt.cpio import write_cpio
from builder.binfmt.kernelimg import KernelImage
from builder.crashkernel.fit import FitReport, fit_recipe
from builder.crashkernel.model import Calibration
from builder.crashkernel.profile import capture_profile
from builder.errors import FetchError, MissingLibraryError, RecipeError, ReleaseError
from builder.image import content
from builder.image.cache import default_cache_dir
from builder.image.capture import CapturePlan
from builder.image.cmdline import capture_cmdline
from builder.image.fetch import FetchedPackage, fetch_packages
from builder.image.initrd import (
    InitrdPlan,
    Member,
    compress_cached,
    early_cpio,
    is_private,
    source_date_epoch,
    split_archives,
)
from builder.image.kernel import CaptureKernel, capture_kernel
from builder.image.makedumpfile import CollectorCheck, check_collector, unreadable_kernel
from builder.image.packages import PackageCache, PackageRoot
from builder.image.progress import ByteProgress
from builder.image.providers import with_provider
from builder.image.reach import Gap, reach_gaps
from builder.image.sources import DirectoryRoot, Root
from builder.recipe.choices import Collector
from builder.recipe.model import Recipe

Reporter = Callable[[str, float], None]


@dataclass(frozen=True)
class Tick:
    """How far a long step is: `done` of `total` bytes, and what it is doing now."""

    step: str
    done: int
    total: int
    detail: str = ""


ProgressListener = Callable[[Tick], None]


def _silent(step: str, seconds: float) -> None:
    pass


@dataclass
class Steps:
    """Runs named steps and reports each with its duration; long ones (fetch, read,
    compress) also tell `progress` how far they are."""

    report: Reporter = _silent
    timings: list[tuple[str, float]] = field(default_factory=list)
    progress: ProgressListener | None = None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        elapsed = time.monotonic() - start
        self.timings.append((name, elapsed))
        self.report(name, elapsed)

    def ticker(self, step: str) -> ByteProgress | None:
        """A callback for `step`'s progress (bytes done, in all, detail); None if unheard."""
        listener = self.progress
        if listener is None:
            return None
        return lambda done, total, detail: listener(Tick(step, done, total, detail))


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    """Everything a build writes, in memory (eleven fields: built with keywords only)."""

    recipe: Recipe
    kernel: KernelImage
    kernel_version: str
    capture: CapturePlan
    kernel_bytes: bytes
    cmdline: str
    members: tuple[Member, ...]
    initrd: bytes
    packages: tuple[FetchedPackage, ...]
    # Firmware a module names that the source root does not have (drivers often
    # list optional firmware); recorded, not fatal, as modprobe and dracut do.
    missing_firmware: tuple[str, ...] = ()
    fit: FitReport | None = None
    # The initrd's makedumpfile against the dumped kernel (None: no makedumpfile).
    collector: CollectorCheck | None = None
    # What keeps the capture from dumping (builder.image.reach); the build stops on it.
    gaps: tuple[Gap, ...] = ()

    @property
    def holds_secrets(self) -> bool:
        """The initrd carries a file a dump target calls secret (such as a private key):
        only its owner may read it."""
        secrets = {path for attempt in self.recipe.dump.attempts()
                   for path in attempt.target.secret_paths(attempt)}  # fmt: skip
        return any(member.path in secrets for member in self.members)


def package_cache() -> PackageCache:
    """The cache of package indexes and read members, beside the fetched packages."""
    return PackageCache(default_cache_dir() / "packages")


def fetch_recipe_packages(
    recipe: Recipe, *, refresh: bool = False, progress: ByteProgress | None = None
) -> list[FetchedPackage]:
    """Fetch `source.packages`; errors name the recipe and the key."""
    try:
        return fetch_packages(
            recipe.source.packages,
            recipe.target.arch,
            refresh=refresh,
            release=recipe.source.release,
            progress=progress,
        )
    except ReleaseError as error:
        raise FetchError(f"{recipe.path}: source.release: {error}") from None
    except FetchError as error:
        raise FetchError(f"{recipe.path}: source.packages: {error}") from None


def directory_root(recipe: Recipe) -> DirectoryRoot:
    """`source.root`: a directory (a Yocto or Buildroot root, `/`); errors name the key."""
    path = recipe.relative(recipe.source.root)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise RecipeError(f"{recipe.path}: source.root: {path} {what}")
    return DirectoryRoot(path)


def open_root(recipe: Recipe, steps: Steps) -> tuple[Root, tuple[FetchedPackage, ...]]:
    """The recipe's source root, fetching named packages first."""
    source = recipe.source
    if source.root:
        return directory_root(recipe), ()
    fetched: list[FetchedPackage] = []
    if source.packages:
        with steps.step("fetch packages"):
            fetched = fetch_recipe_packages(recipe, progress=steps.ticker("fetch packages"))
    files = [package.path for package in fetched]
    for index, name in enumerate(source.package_files):
        path = recipe.relative(name)
        if not path.is_file():
            raise RecipeError(
                f"{recipe.path}: source.package_files: item {index}: {path} not found"
            )
        files.append(path)
    with steps.step("read packages"):
        root = PackageRoot(files, package_cache(), steps.ticker("read packages"))
        return root, tuple(fetched)


def plan_initrd(recipe: Recipe, root: Root, kernel_version: str, steps: Steps) -> InitrdPlan:
    """Decide every member of the capture initrd."""
    plan = InitrdPlan()
    content.plan_base(plan, root)
    target = content.target_content(recipe)
    with steps.step("modules"):
        module_paths = content.plan_modules(recipe, root, kernel_version, plan, target)
    with steps.step("binaries"):
        busybox = content.plan_binaries(recipe, root, plan)
    with steps.step("dump target"):
        content.plan_target(recipe, root, plan, busybox, target)
    content.plan_rendered(recipe, plan, module_paths)
    return plan


def plan_build(
    recipe: Recipe, steps: Steps | None = None, *, calibration: Calibration | None = None
) -> BuildResult:
    """Read the sources and compute every output of the build, writing nothing.

    `calibration`: the fit's model constants (None: the stored calibration of
    the recipe's architecture and kernel series); a calibration bench passes
    the priors, before a store exists.
    """
    steps = steps or Steps()
    root, packages = open_root(recipe, steps)
    with steps.step("kernel"):
        kernel = capture_kernel(recipe, root)
    try:
        plan = plan_initrd(recipe, root, kernel.version, steps)
    except MissingLibraryError as error:
        raise with_provider(recipe, error) from None
    with steps.step("cpio"):
        members = tuple(plan.members())
        collector = checked_collector(recipe, kernel, members)
        parts = split_archives(members, content.archive_of)
        archives = [write_cpio(part, source_date_epoch()) for part in parts]
        # An archive holding a private file never enters the shared compressed cache.
        private = [any(map(is_private, part)) for part in parts]
        microcode = content.microcode_files(recipe, root) if recipe.initrd.microcode else None
        early = early_cpio(microcode, source_date_epoch()) if microcode else b""
    compressing = f"compress ({recipe.initrd.compression})"
    with steps.step(compressing):
        initrd = early + compress_archives(recipe, archives, steps.ticker(compressing), private)
    cmdline = capture_cmdline(recipe.kernel.cmdline, recipe.kernel.cmdline_append, kernel.config)
    gaps = reach_gaps(recipe, cmdline, (member.path for member in members),
                      builtin_modules(root, kernel.version), kernel.version)  # fmt: skip
    with steps.step("fit"):
        profile = capture_profile(recipe, kernel.image, cmdline, members, initrd)
        fit_report = fit_recipe(
            recipe, profile, capture_kernel=kernel.version, calibration=calibration
        )
    return BuildResult(
        recipe=recipe,
        kernel=kernel.image,
        kernel_version=kernel.version,
        capture=kernel.plan,
        kernel_bytes=kernel.data,
        cmdline=cmdline,
        members=members,
        initrd=initrd,
        packages=packages,
        missing_firmware=tuple(plan.missing_firmware),
        fit=fit_report,
        collector=collector,
        gaps=tuple(gaps),
    )


def checked_collector(
    recipe: Recipe, kernel: CaptureKernel, members: tuple[Member, ...]
) -> CollectorCheck | None:
    """The initrd's makedumpfile against the dumped kernel; refused when it cannot
    read that kernel at all (the capture would boot and then fail to save)."""
    collector = check_collector(members, kernel.dumped_version)
    # The config is the capture kernel's: it says what the dumped one is only in reuse.
    if collector is None or kernel.dumped_version != kernel.version:
        return collector
    if recipe.dump.collector is Collector.MAKEDUMPFILE:
        limits = arch_info(recipe.target.arch).collector_limits
        reason = unreadable_kernel(collector, limits, kernel.config)
        if reason is not None:
            raise RecipeError(
                f"{recipe.path}: dump.collector: {reason}; the dump would fail: "
                f'collector = "{Collector.COPY}" saves /proc/vmcore whole'
            )
    return collector


def builtin_modules(root: Root, kernel_version: str) -> tuple[str, ...] | None:
    """The kernel's modules.builtin (module paths), None when it has none."""
    path = f"/lib/modules/{kernel_version}/modules.builtin"
    if not root.exists(path):
        return None
    text = root.read_bytes(path).decode("utf-8", "replace")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def compress_archives(
    recipe: Recipe,
    archives: Sequence[bytes],
    progress: ByteProgress | None = None,
    private: Sequence[bool] = (),
) -> bytes:
    """Each archive compressed (or taken from the cache), concatenated in order.

    An archive marked `private` (it holds a secret) is compressed every time:
    the cache is shared by every build of this user and outlives the secret.

    They compress in parallel: the compressors release the GIL. `progress`
    hears of each archive done (bytes of uncompressed archives).
    """
    total = sum(map(len, archives))
    done = [0, 0]  # bytes, archives

    def one(archive: bytes, secret: bool) -> bytes:
        result = compress_cached(
            archive,
            recipe.initrd.compression,
            recipe.initrd.compression_level,
            None if secret else default_cache_dir() / "compressed",
        )
        if progress is not None:
            with lock:
                done[0] += len(archive)
                done[1] += 1
                progress(done[0], total, f"{done[1]} of {len(archives)} archives")
        return result

    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=max(1, len(archives))) as pool:
        flags = [index < len(private) and private[index] for index in range(len(archives))]
        return b"".join(pool.map(one, archives, flags))
