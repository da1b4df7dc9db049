"""What lies beneath a `local` dump filesystem: md arrays, one LVM logical volume, and
the btrfs subvolume it is mounted from.

Not a target itself: the keys, checks, initrd content and kdump.conf values the
`local` target adds for a filesystem that is not directly on a disk or partition.
The capture assembles only what the dump needs, each part found by its UUID:
the md arrays named (mdadm, degraded if a member is missing), then the one
logical volume (lvm2's own activation, with a configuration that needs no udev).

Why lvm2 and not a device-mapper table recorded at `enable`: a table names the
physical volumes by major:minor and the extents as they were then; the capture
kernel numbers devices in its own order, and an LV extended or moved (pvmove)
since would be mapped onto other data, which the dump would then overwrite.
lvm2 reads the volume group's metadata as it is at the crash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from builder.recipe.dump import TargetOptions
from builder.recipe.parsers import Check, Setting, absolute_path, string, string_list

# mdadm's form of an array UUID (`mdadm --detail`, /dev/disk/by-id/md-uuid-*).
MD_UUID = re.compile(r"^[0-9a-f]{8}(:[0-9a-f]{8}){3}$")
# lvm2's form of a logical volume UUID: 32 characters of its alphabet, grouped 6-4-4-4-4-4-6.
LVM_UUID_ALPHABET = "0-9A-Za-z!#"
_LVM_CHAR = f"[{LVM_UUID_ALPHABET}]"
LVM_UUID = re.compile(rf"^{_LVM_CHAR}{{6}}(-{_LVM_CHAR}{{4}}){{5}}-{_LVM_CHAR}{{6}}$")
# The kernel's core of each stack (dm-linear and dm-stripe are part of dm-mod); an md
# array's RAID level module comes from initrd.modules (host-only selection reads it).
MD_MODULES = ("md_mod",)
MDADM_PROGRAM = "/sbin/mdadm"
LVM_PROGRAM = "/sbin/lvm"
LVM_MODULES = ("dm_mod",)

SETTINGS = (
    Setting(
        "dump.md_arrays",
        string_list(MD_UUID, "md array UUID (xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx)"),
        (),
        "md arrays beneath the dump filesystem, by UUID as mdadm writes it, assembled in "
        "order; an array with a member missing starts degraded. The RAID level's module "
        "(e.g. `raid1`) goes in initrd.modules.",
    ),
    Setting(
        "dump.lvm_volume",
        string,
        "",
        "The LVM logical volume holding the dump filesystem, by its LV UUID (`lvs -o "
        "lv_uuid`); the capture activates only this volume.",
    ),
    Setting(
        "dump.subvolume",
        string,
        "",
        "With a btrfs dump.fstype: the subvolume to mount (its path from the top level, "
        "e.g. `/@crash`); dump.path is inside it.",
    ),
    Setting(
        "dump.mdadm_program",
        absolute_path,
        MDADM_PROGRAM,
        "mdadm in the source root, copied with its libraries when dump.md_arrays is set.",
    ),
    Setting(
        "dump.lvm_program",
        absolute_path,
        LVM_PROGRAM,
        "lvm in the source root, copied with its libraries when dump.lvm_volume is set.",
    ),
)


@dataclass(frozen=True)
class StackOptions(TargetOptions):
    md_arrays: tuple[str, ...] = ()
    lvm_volume: str = ""
    subvolume: str = ""
    mdadm_program: str = MDADM_PROGRAM
    lvm_program: str = LVM_PROGRAM


def stack_options(values: Mapping[str, Any], fstype: str, check: Check) -> StackOptions:
    """The block stack keys, checked (one line naming the key on a bad value).

    The UUID is lvm2's: 32 characters of 0-9A-Za-z!# in groups of 6-4-4-4-4-4-6.

    >>> values = {"md_arrays": (), "lvm_volume": "x", "subvolume": "",
    ...           "mdadm_program": "/sbin/mdadm", "lvm_program": "/sbin/lvm"}
    >>> stack_options(values, "ext4", Check("r.toml", frozenset()))
    Traceback (most recent call last):
    ...
    builder.errors.RecipeError: r.toml: dump.lvm_volume: 'x' is not an LV UUID ...
    """
    volume, subvolume = values["lvm_volume"], values["subvolume"]
    if volume and not LVM_UUID.fullmatch(volume):
        check.fail("dump.lvm_volume", f"{volume!r} is not an LV UUID (6-4-4-4-4-4-6 characters "
                                      f"of {LVM_UUID_ALPHABET})")  # fmt: skip
    if subvolume:
        if fstype != "btrfs":
            check.fail("dump.subvolume", f"only btrfs has subvolumes, dump.fstype is {fstype!r}")
        if not subvolume.startswith("/") or re.search(r"[,\s\0]", subvolume):
            check.fail("dump.subvolume", f"{subvolume!r} is not an absolute path without "
                                         "commas or white space")  # fmt: skip
    return StackOptions(values["md_arrays"], volume, subvolume, values["mdadm_program"],
                        values["lvm_program"])  # fmt: skip


def stack_modules(options: StackOptions) -> tuple[str, ...]:
    """The kernel modules the stack's assembly needs."""
    return (MD_MODULES if options.md_arrays else ()) + (LVM_MODULES if options.lvm_volume else ())


def stack_programs(options: StackOptions) -> tuple[tuple[str, str], ...]:
    """The programs that assemble the stack, as (path in the source root, recipe key)."""
    programs = []
    if options.md_arrays:
        programs.append((options.mdadm_program, "dump.md_arrays"))
    if options.lvm_volume:
        programs.append((options.lvm_program, "dump.lvm_volume"))
    return tuple(programs)


def stack_config(options: StackOptions) -> dict[str, str]:
    """kdump.conf values of the stack (empty when unused: a later attempt resets them).

    >>> options = StackOptions(("0a1b2c3d:00000000:11111111:22222222",), "", "/@crash",
    ...                        "/sbin/mdadm", "/sbin/lvm")
    >>> stack_config(options)["KDUMP_MOUNT_OPTIONS"]
    'subvol=/@crash'
    """
    return {
        "KDUMP_MD_ARRAYS": " ".join(options.md_arrays),
        "KDUMP_LVM_VOLUME": options.lvm_volume,
        "KDUMP_MOUNT_OPTIONS": f"subvol={options.subvolume}" if options.subvolume else "",
    }


def shell_part() -> bytes:
    """`assemble_stack`, the shell function that brings up the md arrays and the LV."""
    return (files("builder.targets") / "blockstack.sh").read_bytes()
