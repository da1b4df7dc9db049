"""What goes in the capture initrd: one step per kind of content, over one `InitrdPlan`.

The steps: the base directories and device nodes, the modules with their
dependencies and firmware, busybox and the programs with their libraries,
the recipe's extra files, the dump target's content and the hooks, and the
files rendered from the recipe (/init's configuration). `archive_of` then
says which of the initrd's concatenated archives holds each member.
"""

from __future__ import annotations

import contextlib
from enum import IntEnum
from pathlib import Path

from builder.arch import arch_info
from builder.errors import ModuleError, RecipeError, SourceError
from builder.image import runtime
from builder.image.cache import default_cache_dir
from builder.image.hostonly import block_device_modules, network_modules
from builder.image.initrd import SOURCE_MODE, InitrdPlan, Member, MemberKind
from builder.image.modules import ModuleIndex
from builder.image.programs import (
    Busybox,
    check_applets,
    check_collector,
    link_applets,
    plan_busybox,
    plan_libraries,
    plan_programs,
    recipe_programs,
)
from builder.image.sources import MERGED_USR_LINKS, NodeKind, Root
from builder.recipe.dump import GeneratedFile, RecipeFiles, TargetContent
from builder.recipe.model import MicrocodeVendor, ModuleSelection, Recipe

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
    MicrocodeVendor.INTEL: ("/lib/firmware/intel-ucode/*", "GenuineIntel.bin"),
    MicrocodeVendor.AMD: ("/lib/firmware/amd-ucode/*.bin", "AuthenticAMD.bin"),
}


class Archive(IntEnum):
    """The initrd's concatenated archives, in the order they are written.

    Programs and libraries change with packages, modules with the module
    list, and the files rendered from the recipe with almost any recipe edit;
    compressed apart (+0.2 % size), each is cached apart, so editing the dump
    settings recompresses a few kilobytes instead of 8 MB at zstd -19.
    """

    PROGRAMS = 0
    MODULES = 1
    RENDERED = 2


def archive_of(member: Member) -> Archive:
    """Which archive holds `member`.

    >>> archive_of(Member("/lib/modules/6.1/ext4.ko", MemberKind.FILE, 0o644, origin="x.deb"))
    <Archive.MODULES: 1>
    """
    if member.path.startswith(("/lib/modules/", "/lib/firmware/")):
        return Archive.MODULES
    if member.kind is MemberKind.FILE and (
        not member.origin or member.origin.startswith(("recipe:", "host:"))
    ):
        return Archive.RENDERED
    return Archive.PROGRAMS


def plan_base(plan: InitrdPlan, root: Root) -> None:
    """The directories and device nodes /init needs before it mounts anything.

    Where the source root has one as a symlink (merged /usr: /bin -> usr/bin),
    the initrd gets the same symlink, so what the root has under /bin lands
    where the link points.
    """
    for top in MERGED_USR_LINKS:
        node = root.lookup(top, follow_last=False) if root.exists(top) else None
        if node is not None and node.kind is NodeKind.SYMLINK:
            plan.directory(root.resolve(top).path)
            plan.symlink(top, node.target, origin=node.origin)
    for directory in BASE_DIRECTORIES:
        plan.directory(directory)
    plan.chardev("/dev/console", *CONSOLE_DEVICE)
    plan.chardev("/dev/null", *NULL_DEVICE, mode=0o666)


def plan_modules(
    recipe: Recipe, root: Root, kernel_version: str, plan: InitrdPlan, target: TargetContent
) -> list[str]:
    """The recipe's and the dump target's modules, their dependencies and firmware.

    Returns the load order. The target's modules come after the recipe's, so
    their dependencies already loaded are not loaded twice.
    """
    if not recipe.initrd.modules and not target.modules:
        return []
    modules = ModuleIndex(root, kernel_version, default_cache_dir() / "modules")
    if recipe.initrd.modules is ModuleSelection.AUTO:
        names = host_module_names(recipe, modules)
    else:
        names = list(recipe.initrd.modules)
    order = modules.load_order(names, "initrd.modules")
    listed = {module.name for module in order}
    order += [
        module
        for module in modules.load_order(target.modules, "dump.target")
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


def host_module_names(recipe: Recipe, modules: ModuleIndex) -> list[str]:
    """`initrd.modules = "auto"`: this host's drivers for the dump target, and its filesystem."""
    names: list[str] = []
    for attempt in recipe.dump.attempts():
        selection = attempt.target.host_selection(attempt)
        if selection.block_device is not None:
            found = block_device_modules(selection.block_device)
        else:
            found = network_modules(macs=selection.interface_macs)
        names += found.required
        for alias in found.optional:
            # A device no module claims: its driver is built in or not needed.
            with contextlib.suppress(ModuleError):
                names += modules.resolve(alias, "initrd.modules")
        if selection.filesystem:
            names.append(f"fs-{selection.filesystem}")
    return list(dict.fromkeys(names))


def plan_binaries(recipe: Recipe, root: Root, plan: InitrdPlan) -> Busybox:
    """Busybox, the recipe's programs with their libraries, and the recipe's extra files."""
    busybox = plan_busybox(recipe, root, plan)
    programs = plan_programs(recipe, root, plan, busybox, recipe_programs(recipe))
    plan_libraries(recipe, root, plan, [recipe.initrd.busybox, *programs], "initrd.binaries")
    plan_extra_files(recipe, root, plan)
    link_applets(plan, busybox)
    return busybox


def plan_extra_files(recipe: Recipe, root: Root, plan: InitrdPlan) -> None:
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
                    data = root.read_bytes(path)
                    plan.file(destination, data, node.mode & SOURCE_MODE, node.origin)
                continue
            host_path = recipe.relative(path) if kind == "recipe" else Path(path)
            if not host_path.is_file():
                raise RecipeError(f"{where}: {host_path} is not a file")
            mode = host_path.stat().st_mode & 0o755
            plan.file(destination, host_path.read_bytes(), mode, f"{kind}:{host_path}")
        except (SourceError, OSError) as error:
            raise RecipeError(f"{where}: {error}") from None


class _RecipeFiles(RecipeFiles):
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def read(self, key: str, name: str) -> bytes:
        path = self.recipe.relative(name)
        try:
            return path.read_bytes()
        except OSError as error:
            raise RecipeError(
                f"{self.recipe.path}: {key}: cannot read {path} ({error.strerror})"
            ) from None

    def where(self, key: str, name: str) -> str:
        return f"{self.recipe.path}: {key}: {self.recipe.relative(name)}"

    def key_error(self, key: str, message: str) -> RecipeError:
        return RecipeError(f"{self.recipe.path}: {key}: {message}")

    def machine_root(self) -> Path | None:
        return self.recipe.machine_root


def target_content(recipe: Recipe) -> TargetContent:
    """What the dump targets (dump.target and every dump.fallback) add to the initrd."""
    files = _RecipeFiles(recipe)
    attempts = recipe.dump.attempts()
    parts = [attempt.target.content(attempt, files) for attempt in attempts]
    generated = {item.path: item for part in parts for item in part.files}
    for attempt in attempts:
        path = runtime.target_shell_path(attempt.target)
        generated[path] = GeneratedFile(path, attempt.target.shell_part(), 0o644)
    return TargetContent(
        modules=tuple(dict.fromkeys(name for part in parts for name in part.modules)),
        programs=tuple(dict.fromkeys(program for part in parts for program in part.programs)),
        files=tuple(generated.values()),
        applets=tuple(dict.fromkeys(applet for part in parts for applet in part.applets)),
    )


def plan_target(
    recipe: Recipe, root: Root, plan: InitrdPlan, busybox: Busybox, target: TargetContent
) -> None:
    """The dump target's programs (with libraries) and files, and the hooks."""
    check_collector(recipe, root)
    check_applets(recipe, busybox, target.applets)
    if target.programs:
        programs = plan_programs(recipe, root, plan, busybox, target.programs)
        plan_libraries(recipe, root, plan, programs, target.programs[0][1])
    for item in sorted(target.files, key=lambda item: item.path):
        plan.file(item.path, item.data, item.mode)
    files = _RecipeFiles(recipe)
    for stage, scripts in (("pre", recipe.dump.pre), ("post", recipe.dump.post)):
        for index, name in enumerate(scripts):
            script = files.read(f"dump.{stage}: item {index}", name)
            plan.file(f"{runtime.HOOK_DIRECTORIES[stage]}/{index:02d}", script, 0o755)


def plan_rendered(recipe: Recipe, plan: InitrdPlan, module_paths: list[str]) -> None:
    """/init, its configuration and the module load order."""
    plan.file(runtime.INIT_PATH, runtime.init_script(), 0o755)
    plan.file(runtime.CONFIG_PATH, runtime.render_config(recipe.dump), 0o644)
    plan.file(runtime.MODULES_PATH, runtime.render_modules(module_paths), 0o644)


def microcode_files(recipe: Recipe, root: Root) -> dict[str, bytes]:
    """initrd.microcode: each vendor's files from the source root, concatenated.

    The recipe parser refused microcode for an architecture without an early loader.
    """
    directory = arch_info(recipe.target.arch).early_microcode_dir
    files: dict[str, bytes] = {}
    for vendor in recipe.initrd.microcode:
        pattern, name = MICROCODE_SOURCES[vendor]
        parts = [path for path in root.glob(pattern) if not path.endswith(".asc")]
        if not parts:
            raise RecipeError(
                f"{recipe.path}: initrd.microcode: {vendor.value!r} but nothing matches "
                f"{pattern} in {root.description} (add the {vendor.value} microcode package "
                "to source.packages)"
            )
        files[f"{directory}/{name}"] = b"".join(root.read_bytes(path) for path in parts)
    return files
