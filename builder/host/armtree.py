"""`kdump-build enable --root DIR`: arm an unbooted Debian root tree at image build time.

Like `enable`, but everything is read from DIR and written inside it: the recipe
(DIR/etc/kdump-build/recipe.toml, `source.root = "/"` as the booted system reads
it), a capture per kernel installed in DIR, the unit switched on by its
multi-user.target.wants symlink, and the GRUB drop-in. No systemctl, no
update-grub, no /proc or /sys of the build host. The captures record the recipe
and kernel by the paths the booted system sees, so its first boot only loads.

The tree must have the kdump-build package installed: its unit runs the tree's own
/usr/bin/kdump-build, never a program of the build host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from builder.crashkernel_syntax import command_line_words
from builder.errors import HostError
from builder.host import captures, grub
from builder.host.managed import sealed, write_managed
from builder.host.paths import UNIT_NAME, HostPaths
from builder.host.probe import HostFacts, installed_kernels
from builder.host.recipe import TreeChoices, host_recipe_text, local_filesystem
from builder.host.reserve import machine_need
from builder.host.state import record_enabled
from builder.host.treefacts import (
    DISK_DRIVERS,
    check_tree,
    confined,
    tree_arch,
    tree_consoles,
    tree_dump_filesystem,
    tree_program,
)
from builder.host.trust import require_trusted_recipe
from builder.recipe.model import Recipe
from builder.recipe.parse import load_recipe
from builder.units import format_mib

Say = Callable[[str], None]
WANTS = f"etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"


def guest(paths: HostPaths, path: Path) -> Path:
    """`path` under the tree as the booted system names it."""
    return Path("/") / path.relative_to(paths.root)


def packaged_unit(paths: HostPaths) -> Path:
    """The unit the tree's kdump-build package installed, or a `HostError`."""
    for unit in paths.packaged_units:
        if confined(paths.root, unit).is_file():
            return unit
    raise HostError(f"{paths.root}: the kdump-build package is not installed in it (no "
                    f"{paths.packaged_units[0]}): install the .deb into the tree first, its "
                    "service runs the tree's own kdump-build")  # fmt: skip


def tree_facts(paths: HostPaths, ram: int) -> tuple[HostFacts, TreeChoices]:
    """Everything the recipe needs, from the tree's files; refusals before any write."""
    check_tree(paths.root)
    for directory in (paths.boot, paths.modules):
        confined(paths.root, directory)
    kernels = installed_kernels(paths)
    if not kernels:
        raise HostError(f"{paths.root}: no kernel installed in it (no boot/vmlinuz-VERSION "
                        "or usr/lib/modules/VERSION/vmlinuz with its modules)")  # fmt: skip
    for version in kernels:
        confined(paths.root, paths.kernel_image(version))
    packaged_unit(paths)
    filesystem = tree_dump_filesystem(paths.root)
    facts = HostFacts(kernels, ram, 1, tree_program(paths, "makedumpfile"),
                      tree_program(paths, "busybox"), filesystem,
                      tree_consoles(paths.root))  # fmt: skip
    modules = (filesystem.fstype, *DISK_DRIVERS)
    return facts, TreeChoices(tree_arch(paths.root), modules)


def _confine_writes(paths: HostPaths) -> None:
    # The wants link's own target is a path of the booted tree: its directory is checked.
    for path in (paths.config_dir, paths.captures, (paths.root / WANTS).parent,
                 paths.grub_dropin):  # fmt: skip
        confined(paths.root, path)


def tree_recipe(paths: HostPaths, facts: HostFacts, choices: TreeChoices, say: Say) -> bool:
    """DIR/etc/kdump-build/recipe.toml, kept when there; True when written now."""
    if paths.recipe.exists():
        say(f"recipe: {paths.recipe} (kept as it is; remove it to have a new one written)")
        return False
    write_managed(paths.recipe, sealed(host_recipe_text(facts, "/", choices)))
    filesystem = local_filesystem(facts)
    say(f"recipe: wrote {paths.recipe} for this tree ({choices.arch.value}, dump to "
        f"{filesystem.device} {filesystem.fstype})")  # fmt: skip
    return True


def load_tree_recipe(paths: HostPaths) -> Recipe:
    """The tree's recipe, built from the tree (`source.root` read as DIR)."""
    recipe = load_recipe(paths.recipe)
    if Path(recipe.source.root or ".") != Path("/"):
        raise HostError(f'{paths.recipe}: source.root: the booted tree builds from itself '
                        '(source.root = "/")')  # fmt: skip
    tree = replace(recipe, source=replace(recipe.source, root=str(paths.root)))
    # After the root is the tree's: the files the recipe leaves to its machine (an ssh
    # server's known_hosts) are the tree's, not the build host's.
    require_trusted_recipe(tree)
    return tree


def enable_unit(paths: HostPaths) -> Path:
    """The wants symlink, as `systemctl enable` would make it inside the tree."""
    link = paths.root / WANTS
    target = guest(paths, packaged_unit(paths))
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return link
    if link.exists() or link.is_symlink():
        raise HostError(f"{link}: exists and is not kdump-build's link to {target}")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def enable_tree(root: Path, ram: int, say: Say) -> None:
    """Arm the tree at `root`; refusals leave it as it was."""
    paths = HostPaths(Path(os.path.abspath(root)))
    facts, choices = tree_facts(paths, ram)
    _confine_writes(paths)
    before = set(captures.built_versions(paths))
    wrote_recipe = tree_recipe(paths, facts, choices, say)
    try:
        _arm(paths, facts, say)
    except BaseException:
        _undo(paths, before, wrote_recipe)
        raise


def _arm(paths: HostPaths, facts: HostFacts, say: Say) -> None:
    recipe = load_tree_recipe(paths)
    for version in facts.kernels:
        record = captures.build_capture(recipe, version, paths, facts.ram, tree=True)
        needed = format_mib(record.needed) if record.needed is not None else "unknown"
        say(f"capture: {paths.capture(version)} (needs {needed} of {format_mib(facts.ram)})")
    for version in captures.built_versions(paths):
        if version not in facts.kernels and captures.remove_capture(paths, version):
            say(f"capture: removed {paths.capture(version)} (kernel no longer in the tree)")
    need = machine_need(paths)
    record_enabled(paths, guest(paths, paths.recipe))
    say(f"service: {enable_unit(paths)}")
    value = command_line_words(need.value)
    if not grub.has_grub(paths, program=False):
        say(f"armed {paths.root}: add {value} to its boot loader's kernel command line")
        return
    grub.apply(paths, need.value, run_update=False)
    say(f"reservation: {value} in {paths.grub_dropin}")
    if grub.grub_cfg_has(paths, need.value) is False:
        say(f"reservation: {paths.grub_cfg} does not pass it yet: run update-grub in the "
            "tree (as the image's boot loader installation does)")  # fmt: skip
    say(f"armed {paths.root}: at its first boot the service loads the capture")


def _undo(paths: HostPaths, before: set[str], wrote_recipe: bool) -> None:
    """A failed arming takes back what it wrote (never what was there before)."""
    for version in set(captures.built_versions(paths)) - before:
        captures.remove_capture(paths, version)
    captures.remove_capture_store(paths)
    if wrote_recipe:
        with contextlib.suppress(OSError):
            paths.recipe.unlink()
        with contextlib.suppress(OSError):
            paths.config_dir.rmdir()  # only when nothing else is in it
