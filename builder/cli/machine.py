"""Commands that arm this machine: enable, disable, boot (the service), and the kernel
hooks' kernel-installed and kernel-removed."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from builder.cli.compat import Argument, Option


def _say(line: str) -> None:
    typer.echo(line)


# The machine's own cache: what enable, the service and the kernel hooks fetch and
# derive belongs to the machine, not to the home of whoever ran them, and the
# package's purge removes it (debian/postrm). KDUMP_BUILD_CACHE still names another.
MACHINE_CACHE = "/var/cache/kdump-build"


def _use_machine_cache() -> None:
    # Imported here: at start-up, builder.image.cache would cost ~17 ms.
    from builder.image.cache import CACHE_ENV

    os.environ.setdefault(CACHE_ENV, MACHINE_CACHE)


# The options of `enable --target`: one line each in enable's signature.
TargetOption = Annotated[str | None, Option(
    "--target", show_default=False,
    help="Write this machine's recipe for this network dump target (dump.target), to the "
    "server of --to, through this machine's own link to it (ifupdown, systemd-networkd or "
    "NetworkManager files).")]  # fmt: skip
ToOption = Annotated[str | None, Option(
    "--to", show_default=False,
    help="With --target: the server, as the target's own key writes it (ADDRESS:/EXPORT for "
    "NFS, USER@ADDRESS for ssh).")]  # fmt: skip
SshKeyOption = Annotated[Path | None, Option(
    "--ssh-key", show_default=False,
    help="With an ssh target: the unencrypted ed25519 key it logs in with (dump.ssh_key) "
    "[the capture's own, made once in /etc/kdump-build/kdump_id_ed25519; enable prints its "
    "line for the server's authorized_keys].")]  # fmt: skip
SshPortOption = Annotated[int | None, Option(
    "--ssh-port", show_default=False,
    help="With an ssh target: the server's port [22].")]  # fmt: skip
AcceptAnyOption = Annotated[bool, Option(
    "--ssh-accept-any-host-key",
    help="With an ssh target: send the dump to whatever answers there, whatever its host key "
    "(dump.ssh_accept_any_host_key).")]  # fmt: skip
PathOption = Annotated[str | None, Option(
    "--path", show_default=False,
    help="With --target: the directory on the server the dumps go below (dump.path) [/ of an "
    "export; /var/crash over ssh].")]  # fmt: skip
InterfaceOption = Annotated[str, Option(
    "--interface",
    help="With --target: the interface that reaches the server [the kernel's route to "
    "it].")]  # fmt: skip
FallbackOption = Annotated[bool, Option(
    "--fallback-local",
    help="With --target: when the server takes nothing, dump to the filesystem of /var/crash "
    "([[dump.fallback]]).")]  # fmt: skip


def enable(
    recipe: Annotated[
        Path | None,
        Argument(help='A recipe with source.root = "/" [a new one for this machine].'),
    ] = None,
    root: Annotated[
        Path | None,
        Option("--root", help="Arm this unbooted root tree (an image being built) instead."),
    ] = None,
    ram: Annotated[
        str | None,
        Option("--ram", help="With --root: the RAM of the machines the image boots on (2G)."),
    ] = None,
    target: TargetOption = None,
    to: ToOption = None,
    ssh_key: SshKeyOption = None,
    ssh_port: SshPortOption = None,
    ssh_accept_any_host_key: AcceptAnyOption = False,
    path: PathOption = None,
    interface: InterfaceOption = "",
    fallback_local: FallbackOption = False,
) -> None:
    """Arm this machine: recipe, a capture per installed kernel, the service, the kernel
    hooks and the crashkernel= reservation. With --target and --to: a recipe that dumps to
    that server. With --root DIR: arm that tree, offline."""
    given = EnableOptions(ssh_key, ssh_port, ssh_accept_any_host_key, path, interface,
                          fallback_local)  # fmt: skip
    network = _network_request(target, to, given)
    if root is not None:
        if network is not None:
            raise typer.BadParameter("not with --root: a tree has no /sys to name its network "
                                     "cards by MAC address, nor a route to the server; put a "
                                     f"recipe with those [dump] keys in {root}/etc/kdump-build/"
                                     "recipe.toml", param_hint="--target")  # fmt: skip
        _enable_tree(root, recipe, ram)
        return
    if ram is not None:
        raise typer.BadParameter("only with --root (this machine's RAM is read from it)",
                                 param_hint="--ram")  # fmt: skip
    if recipe is not None and network is not None:
        raise typer.BadParameter("not with a RECIPE: it writes this machine's recipe (set "
                                 "the [dump] keys in yours instead)",
                                 param_hint="--target")  # fmt: skip
    # Imported here: at start-up, builder.host.enable would cost ~722 ms.
    from builder.host.enable import enable as arm

    _use_machine_cache()
    arm(recipe, _say, network=network)


if TYPE_CHECKING:
    from builder.host.netrecipe import NetworkRequest


@dataclass(frozen=True)
class EnableOptions:
    """The options that go with --target, as given (None, False or "": not given)."""

    ssh_key: Path | None
    ssh_port: int | None
    accept_any_host_key: bool
    path: str | None
    interface: str
    fallback_local: bool


def _network_request(target: str | None, to: str | None,
                     given: EnableOptions) -> NetworkRequest | None:  # fmt: skip
    """What --target and --to ask for; None without them."""
    if (target is None) != (to is None):
        raise typer.BadParameter("--target and --to go together: the network target and its "
                                 "server", param_hint="--to" if target else "--target")  # fmt: skip
    for field in fields(given):
        if target is None and getattr(given, field.name) not in (None, False, ""):
            option = "--" + field.name.replace("_", "-")
            raise typer.BadParameter("only with --target and --to", param_hint=option)
    if target is None or to is None:
        return None
    # Imported here: at start-up, builder.host.netrecipe would cost ~300 ms.
    from builder.host.netrecipe import network_request
    from builder.recipe.dump import EnableRequest

    enable = EnableRequest(to, given.path, given.ssh_key, given.ssh_port, given.accept_any_host_key)
    return network_request(target, enable, given.interface, given.fallback_local)


def _enable_tree(root: Path, recipe: Path | None, ram: str | None) -> None:
    # Imported here: at start-up, the build's modules would cost ~700 ms.
    from builder.crashkernel_syntax import parse_size
    from builder.host.armtree import enable_tree

    if recipe is not None:
        raise typer.BadParameter(f"with --root the recipe is {root}/etc/kdump-build/"
                                 "recipe.toml (put yours there, or let one be written)",
                                 param_hint="RECIPE")  # fmt: skip
    if ram is None:
        raise typer.BadParameter("needed with --root: the RAM of the machines the image "
                                 "boots on (e.g. 2G); a tree has none to read",
                                 param_hint="--ram")  # fmt: skip
    enable_tree(root, parse_size(ram, where="--ram"), _say)


def disable() -> None:
    """Undo enable: service, hooks, reservation, captures; the saved dumps stay."""
    # Imported here: at start-up, builder.host.enable would cost ~722 ms.
    from builder.host.enable import disable as disarm

    _use_machine_cache()
    disarm(_say)


def boot() -> None:
    """What the service runs at boot: prune old dumps, rebuild the capture of the running
    kernel if its recipe or kernel changed, and load it."""
    # Imported here: at start-up, builder.host.boot would cost ~377 ms.
    from builder.host.boot import boot as run_boot

    _use_machine_cache()
    run_boot(_say, _load_capture)


def _load_capture(capture: Path) -> None:
    """`kdump-build load CAPTURE` as the service runs it."""
    # Imported here: at start-up, builder.cli.kexec's load would cost ~104 ms.
    from builder.cli.kexec import load

    load(capture, method="auto", arch=None, backup=None, print_kexec_command=False,
         show=False, verbose=False, testing_corrupt_segment=None)  # fmt: skip


def reload() -> None:
    """What the service's reload runs (the udev rule asks for it after a CPU or memory
    block goes online or offline): load the capture again, for a new ELF core header,
    unless the kernel rewrites the loaded one itself."""
    # Imported here: at start-up, builder.host.boot would cost ~377 ms.
    from builder.host.boot import reload as run_reload

    _use_machine_cache()
    run_reload(_say, _load_capture)


def kernel_installed(
    version: Annotated[str, Argument(help="The kernel version (uname -r form).")],
    image: Annotated[
        Path | None, Option("--image", help="Its image [/boot/vmlinuz-VERSION].")
    ] = None,
) -> None:
    """Kernel hook: build the capture of a newly installed kernel."""
    # Imported here: at start-up, builder.host.boot would cost ~377 ms.
    from builder.host.boot import kernel_installed as built

    _use_machine_cache()
    built(version, image, _say)


def kernel_removed(
    version: Annotated[str, Argument(help="The kernel version (uname -r form).")],
) -> None:
    """Kernel hook: remove the capture of a removed kernel."""
    # Imported here: at start-up, builder.host.boot would cost ~377 ms.
    from builder.host.boot import kernel_removed as removed

    _use_machine_cache()
    removed(version, _say)
