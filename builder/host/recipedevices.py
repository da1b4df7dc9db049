"""The recipe check of `enable` for disk targets: what each `dump.device` is on this machine.

A recipe given to `enable` names its dump devices (the target's and each fallback's);
on the machine being armed they must not sit on a stack the capture cannot bring up
(builder/host/unsupported.py) nor be one device of a btrfs that spans several, and a
raw disk's SERIAL= or WWN= must name one disk at most: the capture refuses to choose
between several (one disk seen through two paths).
A device not present now is left to the build and the capture, as before.
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import HostError, ModuleError
from builder.host.storage import btrfs_of_device, require_single_device_btrfs
from builder.host.unsupported import device_number_of, refuse_unsupported
from builder.image.hostonly import device_name
from builder.recipe.model import Recipe
from builder.targets.rawid import IdentityKind, disks_named, parse_identity


def _key(index: int) -> str:
    return "dump.device" if index == 0 else f"dump.fallback[{index - 1}].device"


def _disk_of(where: str, device: str, sysfs: Path, devfs: Path) -> str | None:
    """The kernel name of `device` here; None when it is not here."""
    if device.partition("=")[0] in IdentityKind.__members__:
        names = disks_named(parse_identity(device), sysfs)
        if len(names) > 1:
            raise HostError(f"{where}: {device} names {len(names)} disks of this machine "
                            f"({' '.join(names)}) and the capture refuses to choose; one disk "
                            "seen through several paths is multipath, which it does not "
                            "assemble")  # fmt: skip
        return names[0] if names else None
    try:
        return device_name(device, sysfs, devfs)
    except ModuleError:
        return None


def check_recipe_devices(recipe: Recipe, sysfs: Path, devfs: Path) -> None:
    """A `HostError` naming the recipe and key of the first dump device the capture of this
    machine could not reach."""
    for index, attempt in enumerate(recipe.dump.attempts()):
        device = attempt.target.host_selection(attempt).block_device
        if device is None:
            continue
        where = f"{recipe.path}: {_key(index)}"
        name = _disk_of(where, device, sysfs, devfs)
        number = device_number_of(name, sysfs) if name is not None else None
        if number is not None:
            refuse_unsupported(number, f"{where}: {device} is {name}", sysfs)
        btrfs = btrfs_of_device(name, sysfs) if name is not None else None
        if btrfs is not None:
            try:
                require_single_device_btrfs(btrfs, sysfs)
            except HostError as error:
                raise HostError(f"{where}: {device} is {name}: {error}") from None
