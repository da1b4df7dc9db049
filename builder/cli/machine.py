"""Commands that arm this machine: enable, disable, boot (the service), and the kernel
hooks' kernel-installed and kernel-removed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

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
) -> None:
    """Arm this machine: recipe, a capture per installed kernel, the service, the kernel
    hooks and the crashkernel= reservation. With --root DIR: arm that tree, offline."""
    if root is not None:
        _enable_tree(root, recipe, ram)
        return
    if ram is not None:
        raise typer.BadParameter("only with --root (this machine's RAM is read from it)",
                                 param_hint="--ram")  # fmt: skip
    # Imported here: at start-up, builder.host.enable would cost ~722 ms.
    from builder.host.enable import enable as arm

    _use_machine_cache()
    arm(recipe, _say)


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
