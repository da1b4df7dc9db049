"""The build: a straight list of named steps from a recipe to an output directory.

Planning (`plan_build`) reads sources and returns everything to write as data;
`write_outputs` is the only step that touches the output directory, and it
swaps the finished directory in whole, so a failed build leaves the previous
output as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import runtime, targets
from builder.elfdeps import library_closure
from builder.errors import RecipeError, SourceError
from builder.fetch import FetchedPackage, fetch_packages
from builder.initrd import InitrdPlan, Member, compress, sha256, source_date_epoch, write_cpio
from builder.kernelimg import KernelImage, parse_kernel_image
from builder.modules import ModuleIndex
from builder.recipe import Recipe
from builder.sources import DirectoryRoot, PackageRoot, Root

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
    kernel_bytes: bytes
    cmdline: str
    members: tuple[Member, ...]
    initrd: bytes
    packages: tuple[FetchedPackage, ...]

    @property
    def holds_secrets(self) -> bool:
        """The initrd carries a private key (ssh target): only its owner may read it."""
        return any(member.path == runtime.SSH_KEY_PATH for member in self.members)

    def manifest(self) -> dict[str, Any]:
        """manifest.json: the inputs and every initrd member."""
        return {
            "recipe": self.recipe.name,
            "arch": self.recipe.target.arch,
            "kernel": {
                "version": self.kernel_version,
                "sha256": sha256(self.kernel_bytes),
                "size": len(self.kernel_bytes),
            },
            "cmdline": self.cmdline,
            "initrd": {
                "sha256": sha256(self.initrd),
                "size": len(self.initrd),
                "compression": self.recipe.initrd.compression,
            },
            "packages": [
                {
                    "name": package.name,
                    "version": package.version,
                    "file": package.path.name,
                    "sha256": sha256(package.path.read_bytes()),
                }
                for package in self.packages
            ],
            "members": [
                {
                    "path": member.path,
                    "type": member.kind.value,
                    "mode": f"{member.mode:04o}",
                    "size": len(member.data),
                    "sha256": sha256(member.data),
                    **({"target": member.target} if member.target else {}),
                    "origin": member.origin or "kdump-build",
                }
                for member in self.members
            ],
        }


def open_root(recipe: Recipe, steps: Steps) -> tuple[Root, tuple[FetchedPackage, ...]]:
    """The recipe's source root, fetching named packages first."""
    source = recipe.source
    if source.root:
        return DirectoryRoot(recipe.relative(source.root)), ()
    fetched: list[FetchedPackage] = []
    if source.packages:
        with steps.step("fetch packages"):
            fetched = fetch_packages(source.packages, recipe.target.arch)
    files = [package.path for package in fetched]
    for index, name in enumerate(source.package_files):
        path = recipe.relative(name)
        if not path.is_file():
            raise RecipeError(
                f"{recipe.path}: source.package_files: item {index}: {path} not found"
            )
        files.append(path)
    with steps.step("read packages"):
        return PackageRoot(files), tuple(fetched)


def _find_kernel(recipe: Recipe, root: Root) -> tuple[str, bytes, KernelImage]:
    key = "kernel.image" if recipe.kernel.mode == "reuse" else "kernel.dedicated_image"
    pattern = recipe.kernel.image if key == "kernel.image" else recipe.kernel.dedicated_image
    matches = root.glob(pattern)
    if len(matches) != 1:
        found = ", ".join(matches) if matches else "nothing"
        raise RecipeError(
            f"{recipe.path}: {key}: {pattern!r} must match exactly one file in "
            f"{root.description}, found {found}"
        )
    data = root.read_bytes(matches[0])
    image = parse_kernel_image(data, matches[0])
    return matches[0], data, image


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


def plan_initrd(recipe: Recipe, root: Root, kernel_version: str, steps: Steps) -> InitrdPlan:
    """Decide every member of the capture initrd."""
    plan = InitrdPlan()
    for directory in BASE_DIRECTORIES:
        plan.directory(directory)
    plan.chardev("/dev/console", *CONSOLE_DEVICE)
    plan.chardev("/dev/null", *NULL_DEVICE, mode=0o666)

    with steps.step("modules"):
        module_paths: list[str] = []
        if recipe.initrd.modules:
            modules = ModuleIndex(root, kernel_version)
            for module in modules.load_order(recipe.initrd.modules, "initrd.modules"):
                # Stored decompressed so busybox insmod needs no decompressor.
                stored = module.path.rsplit(".ko", 1)[0] + ".ko"
                plan.file(stored, module.elf, 0o644, root.origin(module.path))
                module_paths.append(stored)

    with steps.step("binaries"):
        busybox = recipe.initrd.busybox
        try:
            plan.copy_from(root, busybox)
        except SourceError as error:
            raise RecipeError(f"{recipe.path}: initrd.busybox: {error}") from None
        applets = busybox_applets(root.read_bytes(busybox))
        if "sh" not in applets:
            raise RecipeError(f"{recipe.path}: initrd.busybox: {busybox} has no sh applet")
        binaries = recipe.initrd.binaries
        for position, binary in enumerate(binaries):
            try:
                plan.copy_from(root, binary)
            except SourceError as error:
                raise RecipeError(
                    f"{recipe.path}: initrd.binaries: item {position}: {error}"
                ) from None
        for library in library_closure(
            root, [busybox, *binaries], recipe.target.arch, "initrd.binaries"
        ):
            plan.copy_from(root, library)
        busybox_real = root.resolve(busybox).path
        for applet in applets:
            link = f"/bin/{applet}"
            if not plan.has(link):
                plan.symlink(link, busybox_real, origin="busybox applet")

    with steps.step("dump target"):
        targets.plan_target(recipe, root, kernel_version, plan, module_paths)

    plan.file(runtime.INIT_PATH, runtime.init_script(), 0o755)
    plan.file(runtime.CONFIG_PATH, runtime.render_config(recipe.dump), 0o644)
    plan.file(runtime.MODULES_PATH, runtime.render_modules(module_paths), 0o644)
    return plan


def capture_cmdline(recipe: Recipe) -> str:
    """The capture kernel command line (kexec adds elfcorehdr= and memory maps)."""
    return " ".join([*recipe.kernel.cmdline, *recipe.kernel.cmdline_append, "rdinit=/init"])


def plan_build(recipe: Recipe, steps: Steps | None = None) -> BuildResult:
    """Read the sources and compute every output of the build, writing nothing."""
    steps = steps or Steps()
    root, packages = open_root(recipe, steps)
    with steps.step("kernel"):
        kernel_path, kernel_bytes, kernel = _find_kernel(recipe, root)
        kernel_version = _kernel_version(recipe, kernel_path, kernel)
    plan = plan_initrd(recipe, root, kernel_version, steps)
    with steps.step("cpio"):
        members = tuple(plan.members())
        archive = write_cpio(members, source_date_epoch())
    with steps.step(f"compress ({recipe.initrd.compression})"):
        initrd = compress(archive, recipe.initrd.compression, recipe.initrd.compression_level)
    return BuildResult(
        recipe,
        kernel,
        kernel_version,
        kernel_bytes,
        capture_cmdline(recipe),
        members,
        initrd,
        packages,
    )


def write_outputs(result: BuildResult, outdir: Path) -> None:
    """Write the outputs into a fresh directory, then swap it in for `outdir`."""
    outdir = outdir.absolute()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        (staging / "initrd.img").write_bytes(result.initrd)
        (staging / "vmlinuz").write_bytes(result.kernel_bytes)
        (staging / "cmdline.txt").write_text(result.cmdline + "\n")
        manifest = json.dumps(result.manifest(), indent=2, sort_keys=False) + "\n"
        (staging / "manifest.json").write_text(manifest)
        for path in staging.iterdir():
            os.chmod(path, 0o644)
        if result.holds_secrets:
            os.chmod(staging / "initrd.img", 0o600)
        os.chmod(staging, 0o755)
        retired = None
        if outdir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old.", dir=outdir.parent))
            os.rename(outdir, retired / "previous")
        os.rename(staging, outdir)
        if retired is not None:
            shutil.rmtree(retired)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
