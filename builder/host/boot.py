"""What the service does at boot, and what the kernel hooks do, before any load.

At boot: prune the oldest dumps beyond dump.keep, then make sure the running
kernel's capture was built from the current recipe, kernel and kdump-build
(rebuilding it when not). The CLI then loads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from builder.errors import HostError, KdumpBuildError
from builder.host import captures
from builder.host.dumps import prune
from builder.host.lock import host_lock
from builder.host.paths import HostPaths
from builder.host.probe import machine_ram, mounted_directory
from builder.host.state import enabled_recipe
from builder.kexec.crashinfo import CRASH_HOTPLUG_FILES
from builder.recipe.model import Recipe

Say = Callable[[str], None]


def local_dump_directories(recipe: Recipe) -> list[Path]:
    """Where this machine has mounted the directories its dump targets save into
    (the targets whose dumps stay on it)."""
    found = []
    for attempt in recipe.dump.attempts():
        local = attempt.target.local_dumps(attempt)
        if local is not None:
            directory = mounted_directory(local.device, local.path)
            if directory is not None:
                found.append(directory)
    return found


def prune_dumps(recipe: Recipe, paths: HostPaths, say: Say) -> None:
    """Remove the oldest dumps beyond dump.keep. Nothing here may keep the capture from
    loading: a failure is said, and the boot goes on."""
    if recipe.dump.keep <= 0:
        return
    for directory in local_dump_directories(recipe):
        try:
            removed = prune(directory, recipe.dump.keep, paths.dumps_seen)
        except (KdumpBuildError, OSError, ValueError) as error:
            say(f"kdump-build: warning: dumps in {directory} not pruned: {error}")
            continue
        for path in removed:
            say(f"removed the old dump {path} (dump.keep = {recipe.dump.keep})")


def ensure_capture(recipe: Recipe, version: str, paths: HostPaths, say: Say,
                   image: Path | None = None) -> Path:  # fmt: skip
    """The capture of `version`, rebuilt first when its inputs changed."""
    capture = paths.capture(version)
    kernel_image = image or paths.kernel_image(version)
    if not kernel_image.is_file():
        if (capture / "vmlinuz").is_file():
            say(f"{kernel_image} is gone; using the capture built before")
            return capture
        raise HostError(f"{kernel_image}: no such kernel image, and no capture for {version}")
    reason = captures.staleness(capture, captures.current_inputs(recipe.path, kernel_image))
    if reason is not None:
        say(f"rebuilding the capture for {version}: {reason}")
        captures.build_capture(recipe, version, paths, machine_ram(), kernel_image)
    return capture


def prepare_boot(say: Say, paths: HostPaths | None = None) -> Path:
    """Prune, rebuild when needed; the capture directory to load for this kernel."""
    paths = paths or HostPaths()
    recipe = enabled_recipe(paths)
    prune_dumps(recipe, paths, say)
    return ensure_capture(recipe, os.uname().release, paths, say)


def boot(say: Say, load: Callable[[Path], None], paths: HostPaths | None = None) -> None:
    """The service: `prepare_boot`, then `load` the capture, holding the machine's lock."""
    paths = paths or HostPaths()
    with host_lock(paths):
        load(prepare_boot(say, paths))


def kernel_rewrites_header(paths: HostPaths) -> bool:
    """Whether the running kernel rewrites the loaded capture's ELF core header on hotplug:
    a `crash_hotplug` file reads 1 (CONFIG_CRASH_HOTPLUG, and a load that asked for it)."""
    for name in CRASH_HOTPLUG_FILES:
        try:
            if paths.root.joinpath(name).read_text().strip() == "1":
                return True
        except OSError:
            continue  # a kernel without the feature (before 6.6) has no such file
    return False


def reload(say: Say, load: Callable[[Path], None], paths: HostPaths | None = None,
           version: str | None = None) -> None:  # fmt: skip
    """The service's reload, which the udev rule asks for when a CPU or memory block goes
    online or offline: load the running kernel's capture again, so that its ELF core
    header lists the machine as it is now. Nothing where the kernel rewrites the header.
    `version`: the running kernel's (uname -r)."""
    paths = paths or HostPaths()
    with host_lock(paths):
        if kernel_rewrites_header(paths):
            say("kdump-build: the kernel rewrites the loaded capture's ELF core header on "
                "CPU and memory hotplug (crash_hotplug reads 1): nothing to reload")  # fmt: skip
            return
        version = version or os.uname().release
        capture = ensure_capture(enabled_recipe(paths), version, paths, say)
        say(f"kdump-build: reloading {capture}: a new ELF core header for the CPUs and "
            "memory online now (this kernel does not rewrite it)")  # fmt: skip
        load(capture)


def kernel_installed(version: str, image: Path | None, say: Say,
                     paths: HostPaths | None = None) -> None:  # fmt: skip
    """The kernel hook: build the capture of a newly installed kernel, or rebuild it when
    its inputs changed."""
    paths = paths or HostPaths()
    chosen = image or paths.kernel_image(version)
    if not chosen.is_file():
        raise HostError(f"{version}: names no installed kernel ({chosen}: no such file)")
    with host_lock(paths):
        recipe = enabled_recipe(paths)
        # A reinstall or a package upgrade's postinst: only what changed is rebuilt.
        reason = captures.staleness(paths.capture(version),
                                    captures.current_inputs(recipe.path, chosen))  # fmt: skip
        if reason is None:
            say(f"kdump-build: {paths.capture(version)} is up to date")
            return
        record = captures.build_capture(recipe, version, paths, machine_ram(), chosen)
    say(f"kdump-build: built {paths.capture(version)} for kernel {record.kernel_version} "
        f"({reason})")  # fmt: skip


def kernel_removed(version: str, say: Say, paths: HostPaths | None = None) -> None:
    """The kernel hook: remove the capture of a removed kernel (once; purge finds none)."""
    paths = paths or HostPaths()
    capture = paths.capture(version)
    with host_lock(paths):
        removed = captures.remove_capture(paths, version)
    if removed:
        say(f"kdump-build: removed {capture}")
    elif not (capture.exists() or (paths.modules / version).exists()):
        raise HostError(f"{version}: names no kernel and no capture of kdump-build's "
                        f"in {paths.captures}")  # fmt: skip
