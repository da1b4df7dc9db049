"""The build: a straight list of named steps from a recipe to an output directory.

Planning (`plan_build`) reads sources and returns everything to write as data;
builder.image.outputs writes it.
"""

from __future__ import annotations

import contextlib
import posixpath
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from builder.binfmt.kernelimg import KernelImage, parse_kernel_image
from builder.crashkernel.model import FitReport, RangesSpec, SimpleSpec, parse_crashkernel
from builder.crashkernel.profile import capture_profile, fit_recipe
from builder.errors import FetchError, ModuleError, RecipeError, SourceError
from builder.image import runtime, targets
from builder.image.capture import CapturePlan, plan_capture_kernel
from builder.image.fetch import FetchedPackage, default_cache_dir, fetch_packages
from builder.image.hostonly import block_device_modules, network_modules
from builder.image.initrd import (
    MICROCODE_DIR,
    InitrdPlan,
    Member,
    MemberKind,
    compress_cached,
    early_cpio,
    source_date_epoch,
    split_archives,
    write_cpio,
)
from builder.image.libraries import library_closure
from builder.image.modules import ModuleIndex
from builder.image.sources import DirectoryRoot, PackageCache, PackageRoot, Root
from builder.recipe.model import Recipe

# Directories the capture /init expects before it mounts anything.
BASE_DIRECTORIES = (
    "/bin",
    "/dev",
    "/etc",
    "/mnt",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr/bin",
    "/usr/sbin",
)
# The kernel opens /dev/console for init before devtmpfs is mounted.
CONSOLE_DEVICE = (5, 1)
NULL_DEVICE = (1, 3)

# Early microcode: the source files of each vendor and the name the kernel looks for.
MICROCODE_SOURCES = {
    "intel": ("/lib/firmware/intel-ucode/*", "GenuineIntel.bin"),
    "amd": ("/lib/firmware/amd-ucode/*.bin", "AuthenticAMD.bin"),
}

Reporter = Callable[[str, float], None]


def _silent(step: str, seconds: float) -> None:
    pass


@dataclass
class Steps:
    """Runs named steps and reports each with its duration."""

    report: Reporter = _silent
    timings: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        elapsed = time.monotonic() - start
        self.timings.append((name, elapsed))
        self.report(name, elapsed)


@dataclass(frozen=True)
class BuildResult:
    """Everything a build writes, in memory."""

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

    @property
    def holds_secrets(self) -> bool:
        """The initrd carries a private key (ssh target): only its owner may read it."""
        return any(member.path == runtime.SSH_KEY_PATH for member in self.members)


def package_cache() -> PackageCache:
    """The cache of package indexes and read members, beside the fetched packages."""
    return PackageCache(default_cache_dir() / "packages")


def fetch_recipe_packages(recipe: Recipe, *, refresh: bool = False) -> list[FetchedPackage]:
    """Fetch `source.packages`; errors name the recipe and the key."""
    try:
        return fetch_packages(recipe.source.packages, recipe.target.arch, refresh=refresh)
    except FetchError as error:
        raise FetchError(f"{recipe.path}: source.packages: {error}") from None


def open_root(recipe: Recipe, steps: Steps) -> tuple[Root, tuple[FetchedPackage, ...]]:
    """The recipe's source root, fetching named packages first."""
    source = recipe.source
    if source.root:
        return DirectoryRoot(recipe.relative(source.root)), ()
    fetched: list[FetchedPackage] = []
    if source.packages:
        with steps.step("fetch packages"):
            fetched = fetch_recipe_packages(recipe)
    files = [package.path for package in fetched]
    for index, name in enumerate(source.package_files):
        path = recipe.relative(name)
        if not path.is_file():
            raise RecipeError(
                f"{recipe.path}: source.package_files: item {index}: {path} not found"
            )
        files.append(path)
    with steps.step("read packages"):
        return PackageRoot(files, package_cache()), tuple(fetched)


def _find_kernel(
    recipe: Recipe, root: Root, key: str, pattern: str
) -> tuple[str, bytes, KernelImage]:
    matches = root.glob(pattern)
    if len(matches) != 1:
        found = ", ".join(matches) if matches else "nothing"
        raise RecipeError(
            f"{recipe.path}: {key}: {pattern!r} must match exactly one file in "
            f"{root.description}, found {found}"
        )
    data = root.read_bytes(matches[0])
    return matches[0], data, parse_kernel_image(data, matches[0])


def _capture_plan(
    recipe: Recipe, root: Root, main: KernelImage, dedicated: KernelImage | None, version: str
) -> CapturePlan:
    """Check that the capture kernel can do the job where the reservation puts it."""
    config_path = f"/boot/config-{version}"
    config_text = (
        root.read_bytes(config_path).decode(errors="replace") if root.exists(config_path) else None
    )
    spec = parse_crashkernel(recipe.crashkernel.reserve, where="crashkernel.reserve")
    offset = spec.offset if isinstance(spec, SimpleSpec | RangesSpec) else None
    # A range's size depends on the target's RAM; placement needs an upper bound only.
    size = max(e.size for e in spec.entries) if isinstance(spec, RangesSpec) else spec.size
    return plan_capture_kernel(
        main,
        mode=recipe.kernel.mode,
        recipe=str(recipe.path),
        reservation_size=size,
        reservation_offset=offset,
        dedicated=dedicated,
        config_text=config_text,
        config_name=config_path,
    )


def _kernel_version(recipe: Recipe, path: str, image: KernelImage) -> str:
    if not image.version:
        key = "kernel.image" if recipe.kernel.mode == "reuse" else "kernel.dedicated_image"
        raise RecipeError(f"{recipe.path}: {key}: {path} carries no kernel version string")
    return image.version


def busybox_applets(binary: bytes) -> list[str]:
    """Applet names compiled into a busybox binary, read without running it.

    Busybox keeps its applet names as one sorted, NUL-separated table that
    starts with `[` and `[[`; reading it works for any architecture.
    """
    start = binary.find(b"[\0[[\0")
    if start < 0:
        return []
    names: list[str] = []
    offset = start
    while True:
        end = binary.index(b"\0", offset)
        name = binary[offset:end]
        if not name or not all(32 < byte < 127 and byte != ord("/") for byte in name):
            break
        names.append(name.decode())
        offset = end + 1
    return names if names == sorted(names) else []


def _plan_modules(recipe: Recipe, root: Root, kernel_version: str, plan: InitrdPlan) -> list[str]:
    """Add the recipe's and the dump target's modules, their dependencies and
    firmware; return the load order."""
    target_modules = targets.target_content(recipe).modules
    if not recipe.initrd.modules and not target_modules:
        return []
    modules = ModuleIndex(root, kernel_version, default_cache_dir() / "modules")
    if recipe.initrd.modules == "auto":
        names = _host_module_names(recipe, modules)
    else:
        names = list(recipe.initrd.modules)
    order = modules.load_order(names, "initrd.modules")
    # The target's modules come after the recipe's, so their dependencies
    # already loaded are not loaded twice.
    listed = {module.name for module in order}
    order += [
        module
        for module in modules.load_order(target_modules, "dump.target")
        if module.name not in listed
    ]
    module_paths: list[str] = []
    for module in order:
        stored, data = modules.stored_form(module)
        plan.file(stored, data, 0o644, root.origin(module.path))
        module_paths.append(stored)
    firmware, missing = modules.firmware(order)
    plan.missing_firmware.extend(missing)
    for item in firmware:
        plan.file(item.path, item.data, 0o644, root.origin(item.source))
    return module_paths


def _host_module_names(recipe: Recipe, modules: ModuleIndex) -> list[str]:
    """`initrd.modules = "auto"`: this host's drivers for the dump target, and its filesystem."""
    if recipe.dump.target == "local":
        found = block_device_modules(recipe.dump.device)
    else:
        found = network_modules()
    names = list(found.required)
    for alias in found.optional:
        # A device no module claims: its driver is built in or not needed.
        with contextlib.suppress(ModuleError):
            names += modules.resolve(alias, "initrd.modules")
    fstype = getattr(recipe.dump, "fstype", "")
    if fstype:
        names.append(f"fs-{fstype}")
    return list(dict.fromkeys(names))


def _plan_extra_files(recipe: Recipe, root: Root, plan: InitrdPlan) -> None:
    """initrd.extra_files: from the source root unless the item names another source."""
    for position, item in enumerate(recipe.initrd.extra_files):
        destination, _, source = item.partition("=")
        kind, _, path = source.partition(":") if source else ("root", "", destination)
        where = f"{recipe.path}: initrd.extra_files: item {position}"
        try:
            if kind == "root":
                if path == destination:
                    plan.copy_from(root, path)
                else:
                    node = root.lookup(path)
                    plan.file(destination, root.read_bytes(path), node.mode & 0o7777, node.origin)
                continue
            host_path = recipe.relative(path) if kind == "recipe" else Path(path)
            if not host_path.is_file():
                raise RecipeError(f"{where}: {host_path} is not a file")
            mode = host_path.stat().st_mode & 0o755
            plan.file(destination, host_path.read_bytes(), mode, f"{kind}:{host_path}")
        except (SourceError, OSError) as error:
            raise RecipeError(f"{where}: {error}") from None


def script_interpreter(data: bytes) -> tuple[str, str] | None:
    """The `#!` interpreter of a script and its first argument, or None.

    >>> script_interpreter(b"#!/usr/bin/env python3\\n")
    ('/usr/bin/env', 'python3')
    """
    if not data.startswith(b"#!"):
        return None
    line = data[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not line:
        return None
    return line[0], line[1] if len(line) > 1 else ""


def _plan_programs(
    recipe: Recipe, root: Root, plan: InitrdPlan, applets: Sequence[str], busybox_real: str
) -> list[str]:
    """initrd.binaries and extra_binaries, with `#!` interpreters; return the ELF programs.

    An interpreter busybox provides (`/bin/sh`, `/usr/bin/env`) becomes a link
    to busybox; any other is copied from the source root like a binary.
    """
    programs: list[str] = []
    pending = [
        *(
            (path, "initrd.binaries", index, False)
            for index, path in enumerate(recipe.initrd.binaries)
        ),
        *(
            (path, "initrd.extra_binaries", index, False)
            for index, path in enumerate(recipe.initrd.extra_binaries)
        ),
    ]
    seen: set[str] = set()
    while pending:
        path, key, position, interpreted = pending.pop(0)
        if path in seen:
            continue
        seen.add(path)
        if interpreted and posixpath.basename(path) in applets:
            if not plan.has(path):
                plan.symlink(path, busybox_real, origin="busybox applet")
            continue
        try:
            plan.copy_from(root, path)
            data = root.read_bytes(path)
        except SourceError as error:
            raise RecipeError(f"{recipe.path}: {key}: item {position}: {error}") from None
        interpreter = script_interpreter(data)
        if interpreter is None:
            programs.append(path)
            continue
        program, argument = interpreter
        pending.append((program, key, position, True))
        if posixpath.basename(program) == "env" and argument and not argument.startswith("-"):
            pending.append((f"/usr/bin/{argument}", key, position, True))
    return programs


def _plan_microcode(recipe: Recipe, root: Root) -> dict[str, bytes]:
    """initrd.microcode: each vendor's files from the source root, concatenated."""
    files: dict[str, bytes] = {}
    for vendor in recipe.initrd.microcode:
        pattern, name = MICROCODE_SOURCES[vendor]
        parts = [path for path in root.glob(pattern) if not path.endswith(".asc")]
        if not parts:
            raise RecipeError(
                f"{recipe.path}: initrd.microcode: {vendor!r} but nothing matches {pattern} in "
                f"{root.description} (add the {vendor} microcode package to source.packages)"
            )
        files[f"{MICROCODE_DIR}/{name}"] = b"".join(root.read_bytes(path) for path in parts)
    return files


def plan_initrd(recipe: Recipe, root: Root, kernel_version: str, steps: Steps) -> InitrdPlan:
    """Decide every member of the capture initrd."""
    plan = InitrdPlan()
    for directory in BASE_DIRECTORIES:
        plan.directory(directory)
    plan.chardev("/dev/console", *CONSOLE_DEVICE)
    plan.chardev("/dev/null", *NULL_DEVICE, mode=0o666)

    with steps.step("modules"):
        module_paths = _plan_modules(recipe, root, kernel_version, plan)

    with steps.step("binaries"):
        busybox = recipe.initrd.busybox
        try:
            plan.copy_from(root, busybox)
        except SourceError as error:
            raise RecipeError(f"{recipe.path}: initrd.busybox: {error}") from None
        applets = busybox_applets(root.read_bytes(busybox))
        if "sh" not in applets:
            raise RecipeError(f"{recipe.path}: initrd.busybox: {busybox} has no sh applet")
        busybox_real = root.resolve(busybox).path
        programs = _plan_programs(recipe, root, plan, applets, busybox_real)
        for library in library_closure(
            root,
            [busybox, *programs],
            recipe.target.arch,
            "initrd.binaries",
            default_cache_dir() / "elf",
        ):
            plan.copy_from(root, library)
        _plan_extra_files(recipe, root, plan)
        for applet in applets:
            link = f"/bin/{applet}"
            if not plan.has(link):
                plan.symlink(link, busybox_real, origin="busybox applet")

    with steps.step("dump target"):
        targets.plan_target(recipe, root, plan)

    plan.file(runtime.INIT_PATH, runtime.init_script(), 0o755)
    plan.file(runtime.CONFIG_PATH, runtime.render_config(recipe.dump), 0o644)
    plan.file(runtime.MODULES_PATH, runtime.render_modules(module_paths), 0o644)
    return plan


def _archive_of(member: Member) -> int:
    """Which of the initrd's concatenated archives holds a member.

    Programs and libraries change with packages, modules with the module
    list, and the files rendered from the recipe with almost any recipe edit;
    compressed apart (+0.2 % size), each is cached apart, so editing the dump
    settings recompresses a few kilobytes instead of 8 MB at zstd -19.
    """
    if member.path.startswith(("/lib/modules/", "/lib/firmware/")):
        return 1
    if member.kind is MemberKind.FILE and (
        not member.origin or member.origin.startswith(("recipe:", "host:"))
    ):
        return 2
    return 0


def capture_cmdline(recipe: Recipe) -> str:
    """The capture kernel command line (kexec adds elfcorehdr= and memory maps)."""
    return " ".join([*recipe.kernel.cmdline, *recipe.kernel.cmdline_append, "rdinit=/init"])


def plan_build(recipe: Recipe, steps: Steps | None = None) -> BuildResult:
    """Read the sources and compute every output of the build, writing nothing."""
    steps = steps or Steps()
    root, packages = open_root(recipe, steps)
    with steps.step("kernel"):
        kernel_path, kernel_bytes, kernel = _find_kernel(
            recipe, root, "kernel.image", recipe.kernel.image
        )
        main_kernel, dedicated = kernel, None
        if recipe.kernel.mode == "dedicated":
            kernel_path, kernel_bytes, kernel = _find_kernel(
                recipe, root, "kernel.dedicated_image", recipe.kernel.dedicated_image
            )
            dedicated = kernel
        kernel_version = _kernel_version(recipe, kernel_path, kernel)
        capture = _capture_plan(recipe, root, main_kernel, dedicated, kernel_version)
    plan = plan_initrd(recipe, root, kernel_version, steps)
    with steps.step("cpio"):
        members = tuple(plan.members())
        archives = [
            write_cpio(part, source_date_epoch()) for part in split_archives(members, _archive_of)
        ]
        early = early_cpio(_plan_microcode(recipe, root), source_date_epoch())
        early = early if recipe.initrd.microcode else b""
    # The archives compress in parallel: the compressors release the GIL.
    with (
        steps.step(f"compress ({recipe.initrd.compression})"),
        ThreadPoolExecutor(max_workers=len(archives)) as pool,
    ):
        compressed = pool.map(
            lambda archive: compress_cached(
                archive,
                recipe.initrd.compression,
                recipe.initrd.compression_level,
                default_cache_dir() / "compressed",
            ),
            archives,
        )
        initrd = early + b"".join(compressed)
    cmdline = capture_cmdline(recipe)
    with steps.step("fit"):
        fit_report = fit_recipe(recipe, capture_profile(recipe, kernel, cmdline, members, initrd))
    return BuildResult(
        recipe,
        kernel,
        kernel_version,
        capture,
        kernel_bytes,
        cmdline,
        members,
        initrd,
        packages,
        tuple(plan.missing_firmware),
        fit_report,
    )
