"""`kdump-build enable` and `disable`: arm this machine for crash dumps, and undo it.

enable: the recipe (this host's, written to /etc/kdump-build/recipe.toml, or the one
given), a capture for every installed kernel, the service and the kernel hooks, the
reservation in GRUB; it ends with one line saying whether a reboot is needed.
disable removes all of that and leaves the dumps alone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from builder.crashkernel.live import read_live_reservation
from builder.crashkernel_syntax import command_line_words
from builder.errors import HostError
from builder.host import captures, grub, service
from builder.host.lock import host_lock
from builder.host.managed import is_managed, is_unedited, remove_managed, sealed, write_managed
from builder.host.netrecipe import NetworkRequest, network_dump_table
from builder.host.paths import UNIT_NAME, HostPaths
from builder.host.probe import DumpFilesystem, HostFacts, installed_kernels, probe_host
from builder.host.recipe import check_host_recipe, host_recipe_text, local_filesystem
from builder.host.recipedevices import check_recipe_devices
from builder.host.reserve import Need, machine_need
from builder.host.sshkey import ensure_capture_key, forget_made_key, say_public_key
from builder.host.state import enabled_recipe_path, forget_enabled, record_enabled
from builder.host.trust import (
    require_root_only,
    require_trusted_program,
    require_trusted_recipe,
    require_trusted_target_files,
)
from builder.recipe.model import Recipe
from builder.recipe.parse import load_recipe, parse_recipe
from builder.units import format_mib

Say = Callable[[str], None]


@dataclass(frozen=True)
class Effects:
    """What enable and disable run besides writing files (tests on a temporary root turn
    them off): systemctl, update-grub, and the root check."""

    systemctl: bool = True
    update_grub: bool = True
    require_root: bool = True


def _require_root(effects: Effects, what: str) -> None:
    if effects.require_root and os.geteuid() != 0:
        raise HostError(f"{what} changes this machine's boot and needs root (run it as root)")


@contextlib.contextmanager
def _restored_on_failure(path: Path, replacing: bool) -> Iterator[None]:
    """When `replacing` (a network recipe is written over the host recipe): put the
    previous recipe back, or remove the new one, if what follows fails (a capture
    that does not build), so a failed enable leaves the recipe as it found it."""
    previous = path.read_bytes() if replacing and path.is_file() else None
    mode = path.stat().st_mode & 0o7777 if previous is not None else 0
    try:
        yield
    except BaseException:
        current = path.read_bytes() if replacing and path.is_file() else None
        if current != previous and previous is not None:
            write_managed(path, previous.decode(), mode=mode)
        elif current != previous:
            remove_managed(path)
        raise


def write_host_recipe(facts: HostFacts, paths: HostPaths) -> Path:
    """This machine's recipe, sealed: disable removes it only while it is as written (its
    header tells the admin to edit it)."""
    write_managed(paths.recipe, sealed(host_recipe_text(facts, str(paths.root))))
    return paths.recipe


def write_network_recipe(request: NetworkRequest, facts: HostFacts, paths: HostPaths,
                         say: Say) -> Path:  # fmt: skip
    """This machine's recipe for a dump to the server of `request`, sealed; it replaces
    only a host recipe kdump-build wrote and nobody edited. Every refusal comes before
    anything is written."""
    local = local_filesystem(facts) if request.fallback_local else None
    own_key = None
    if request.target.logs_in_with_key and request.enable.key is None:
        own_key = ensure_capture_key(paths.config_dir)  # the capture's own login
        request = replace(request, enable=replace(request.enable, key=own_key.path))
    try:
        text = _network_recipe_text(request, facts, paths, local)
    except BaseException:
        if own_key is not None:
            forget_made_key(own_key)  # a refusal leaves nothing new behind
        raise
    write_managed(paths.recipe, text)
    if own_key is not None and own_key.made:
        say(f"ssh key: made {own_key.path} (ed25519, only root reads it) for the capture's "
            "login; it stays after disable, for the next enable")  # fmt: skip
    if request.enable.key is not None:
        say_public_key(request.target, request.enable.key, request.enable.destination, say)
    say(f"recipe: wrote {paths.recipe} for this machine:")
    say('  source    this machine (source.root = "/"), each installed kernel reused')
    say('  modules   the drivers of the network cards of the link (modules = "auto")')
    say(f"  dump to   {request.target} {request.enable.destination}" + (
        f", else {local.device} ({local.fstype}) at {local.path}" if local else ""))  # fmt: skip
    return paths.recipe


def _network_recipe_text(request: NetworkRequest, facts: HostFacts, paths: HostPaths,
                         local: DumpFilesystem | None) -> str:  # fmt: skip
    """The recipe for `request`, or the refusal: every check before anything is written."""
    table = network_dump_table(request, paths.root, local, facts.busybox)
    text = sealed(host_recipe_text(facts, str(paths.root), dump_table=table))
    require_trusted_target_files(parse_recipe(text, paths.recipe))  # the key, before writing
    if paths.recipe.exists() and not (is_managed(paths.recipe) and is_unedited(paths.recipe)):
        raise HostError(f"--target: {paths.recipe} was edited since kdump-build wrote it, "
                        "or is not its: set its [dump] keys by hand (kdump-build network "
                        "SERVER prints the link's), or move it away")  # fmt: skip
    return text


def host_recipe(given: Path | None, facts: HostFacts, paths: HostPaths, say: Say,
                network: NetworkRequest | None = None) -> Recipe:  # fmt: skip
    """The recipe to enable: the one given, a new one for a network target, an existing
    host recipe, or a new one."""
    if network is not None:
        path = write_network_recipe(network, facts, paths, say)
    elif given is not None:
        path = given.absolute()
        say(f"recipe: {path}")
    elif paths.recipe.exists():
        path = paths.recipe
        say(f"recipe: {path} (kept as it is; remove it to have a new one written)")
    else:
        path = write_host_recipe(facts, paths)
        filesystem = local_filesystem(facts)
        say(f"recipe: wrote {path} for this machine:")
        say('  source    this machine (source.root = "/"), each installed kernel reused')
        say('  modules   the drivers this machine uses for the dump disk (modules = "auto")')
        say(f"  dump to   {filesystem.device} ({filesystem.fstype}) at {filesystem.path},"
            f" mounted here at {filesystem.mount_point}")  # fmt: skip
    require_root_only(path, "a recipe")  # root rebuilds from it at every boot
    recipe = load_recipe(path)
    require_trusted_recipe(recipe)
    check_host_recipe(recipe, paths.root)
    check_recipe_devices(recipe, paths.root / "sys", paths.root / "dev")
    return recipe


def build_all(recipe: Recipe, facts: HostFacts, paths: HostPaths, say: Say) -> None:
    """A capture for every installed kernel; captures of kernels now gone are removed."""
    for version in facts.kernels:
        start = time.monotonic()
        record = captures.build_capture(recipe, version, paths, facts.ram)
        needed = format_mib(record.needed) if record.needed is not None else "unknown"
        say(f"capture: {paths.capture(version)} built in {time.monotonic() - start:.1f} s "
            f"(needs {needed} on this machine's {format_mib(facts.ram)} of RAM)")  # fmt: skip
    # Asked again now, not from the facts probed before the builds: a kernel installed
    # meanwhile has its capture and keeps it.
    installed = installed_kernels(paths)
    for version in captures.built_versions(paths):
        if version not in installed and captures.remove_capture(paths, version):
            say(f"capture: removed {paths.capture(version)} (kernel no longer installed)")


def is_packaged(paths: HostPaths) -> bool:
    """Whether the Debian package installed the unit and the hooks (enable only switches
    them on then; they do nothing while /etc/kdump-build/enabled is missing)."""
    return any(unit.is_file() for unit in paths.packaged_units)


def install_files(paths: HostPaths, say: Say) -> None:
    """The unit, the kernel hooks and the kernel-install plugin, unless packaged."""
    if is_packaged(paths):
        say(f"service: {UNIT_NAME} and the kernel hooks of the kdump-build package, "
            "switched on")  # fmt: skip
        return
    require_trusted_program()  # what they will run as root
    command = service.kdump_build_command()
    files = (
        (paths.unit, service.unit_text(command), 0o644),
        (paths.postinst_hook, service.postinst_hook_text(command), 0o755),
        (paths.postrm_hook, service.postrm_hook_text(command), 0o755),
        (paths.install_plugin, service.install_plugin_text(command), 0o755),
        (paths.udev_rule, service.udev_rule_text(), 0o644),
    )
    for path, text, mode in files:
        write_managed(path, text, mode=mode)
    say(f"service: {paths.unit}; kernel hooks: {paths.postinst_hook}, {paths.postrm_hook}, "
        f"{paths.install_plugin}; hotplug reload: {paths.udev_rule}")  # fmt: skip


def systemctl(*args: str) -> None:
    try:
        result = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    except OSError as error:
        raise HostError(f"systemctl: {error.strerror}") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise HostError(f"systemctl {' '.join(args)} failed: {last}")


def apply_reservation(paths: HostPaths, need: Need, effects: Effects, say: Say) -> bool:
    """Write crashkernel= for GRUB; True when it went into GRUB's configuration."""
    value = command_line_words(need.value)
    claim = (f"{value} for this machine ({format_mib(need.ram)} of RAM): the largest capture "
             f"({need.kernel_version}) needs {format_mib(need.needed)}, "
             f"{format_mib(need.margin)} margin")  # fmt: skip
    if not grub.has_grub(paths, program=effects.update_grub):
        say(f"reservation: {claim}")
        say(f"reservation: no GRUB here; add {value} to the kernel command line of this "
            "machine's boot loader")  # fmt: skip
        return False
    grub.apply(paths, need.value, run_update=effects.update_grub)
    say(f"reservation: {claim}, in {paths.grub_dropin}")
    for other in grub.other_settings(paths):
        say(f"reservation: warning: {other} sets crashkernel= too; the last one on the command "
            "line wins")  # fmt: skip
    return True


def enable(
    given: Path | None,
    say: Say,
    paths: HostPaths | None = None,
    effects: Effects | None = None,
    facts: HostFacts | None = None,
    network: NetworkRequest | None = None,
) -> None:
    """Arm this machine; the last line says whether a reboot is needed. `network`: write
    a recipe for that dump server (`enable --target nfs|ssh --to SERVER`) instead."""
    paths, effects = paths or HostPaths(), effects or Effects()
    _require_root(effects, "enable")
    with host_lock(paths):
        need, in_grub = _enable_locked(given, say, paths, effects, facts, network)
    live = read_live_reservation()
    if live.usable >= need.needed > 0:
        if effects.systemctl:
            # After the lock is released: the service's `kdump-build boot` takes it too.
            systemctl("restart", UNIT_NAME)
        say(f"ready: the running kernel reserves {format_mib(live.size)}, the capture is "
            "loaded; no reboot needed")  # fmt: skip
    elif in_grub:
        say(f"reboot needed: {command_line_words(need.value)} takes effect at the next boot")
    else:
        words = command_line_words(need.value)
        say(f"reboot needed, after adding {words} to the kernel command line")


def _enable_locked(given: Path | None, say: Say, paths: HostPaths, effects: Effects,
                   facts: HostFacts | None,
                   network: NetworkRequest | None) -> tuple[Need, bool]:  # fmt: skip
    """Everything of enable that changes the machine; the need and whether GRUB has it."""
    facts = facts or probe_host(paths, local=network is None or network.fallback_local)
    with _restored_on_failure(paths.recipe, network is not None):
        recipe = host_recipe(given, facts, paths, say, network)
        build_all(recipe, facts, paths, say)
    record_enabled(paths, recipe.path)
    install_files(paths, say)
    if effects.systemctl:
        systemctl("daemon-reload")
        systemctl("enable", UNIT_NAME)
    need = machine_need(paths)
    return need, apply_reservation(paths, need, effects, say)


def disable(say: Say, paths: HostPaths | None = None, effects: Effects | None = None) -> None:
    """Undo enable: service, hooks, reservation, captures, recipe; the dumps stay."""
    paths, effects = paths or HostPaths(), effects or Effects()
    _require_root(effects, "disable")
    with host_lock(paths):
        _disable_locked(say, paths, effects)


def _disable_locked(say: Say, paths: HostPaths, effects: Effects) -> None:
    if effects.systemctl and (is_managed(paths.unit) or is_packaged(paths)):
        systemctl("disable", "--now", UNIT_NAME)
    removed = [path for path in (paths.unit, paths.postinst_hook, paths.postrm_hook,
                                 paths.install_plugin, paths.udev_rule)
               if remove_managed(path)]  # fmt: skip
    if effects.systemctl and removed:
        systemctl("daemon-reload")
    if grub.remove(paths, run_update=effects.update_grub and grub.has_grub(paths)):
        removed.append(paths.grub_dropin)
    for version in captures.built_versions(paths):
        captures.remove_capture(paths, version)
        removed.append(paths.capture(version))
    captures.remove_capture_store(paths)
    recipe = enabled_recipe_path(paths)
    forget_enabled(paths)
    kept = recipe == paths.recipe and is_managed(paths.recipe) and not is_unedited(paths.recipe)
    if recipe == paths.recipe and not kept and remove_managed(paths.recipe):
        removed.append(paths.recipe)
    for path in removed:
        say(f"removed {path}")
    if kept:
        say(f"kept {paths.recipe}: edited since kdump-build wrote it (remove it by hand)")
    if recipe is None and not removed:
        say("kdump-build was not enabled on this machine: nothing to remove")
        return
    reserved = read_live_reservation().size
    tail = f"; reboot to free the {format_mib(reserved)} reservation" if reserved else ""
    say(f"disabled: the dumps in {paths.crash} stay{tail}")
