"""The recipe `enable` writes for this machine, and the per-kernel form of any recipe.

A host recipe reads everything from the running system (`source.root = "/"`): each
installed kernel is its own capture kernel, its modules are chosen from this
machine's drivers, and the dump goes to the filesystem that holds /var/crash.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from builder.arch import Arch
from builder.errors import HostError
from builder.host.managed import marker_line
from builder.host.probe import DumpFilesystem, HostFacts
from builder.recipe.model import Recipe
from builder.recipe.text import comment_text, toml_list, toml_string
from builder.units import MiB, format_size

DEFAULT_KEEP = 3
# A machine booted without console= logs to its first virtual terminal: the capture
# does the same, said explicitly so the recipe names where its messages go.
DEFAULT_CONSOLES = ("console=tty0",)


def host_recipe_text(facts: HostFacts, root: str = "/", tree: TreeChoices | None = None,
                     dump_table: str | None = None) -> str:  # fmt: skip
    """recipe.toml for this machine (deterministic in the facts); `root` is its root
    directory (`/`; tests give another). `tree`: an unbooted tree's fixed choices
    (`enable --root`) instead of what the running machine shows. `dump_table`: the
    [dump] table (`enable --target nfs|ssh`) instead of the filesystem of /var/crash."""
    ram = format_size(facts.ram // MiB * MiB)
    return f"""\
{marker_line().rstrip()}
# The recipe for this machine. Edit it, then run `kdump-build enable` again.
name = "host"
{target_lines(tree)}
[source]
root = {toml_string(root, "source.root")}

[kernel]
mode = "reuse"
# One capture per installed kernel: each /boot/vmlinuz-<version> is the capture kernel
# of its own capture, in /var/lib/kdump-build/<version>/.
image = "/boot/vmlinuz-*"
cmdline_append = {toml_list(facts.consoles or DEFAULT_CONSOLES, "kernel.cmdline_append")}

[initrd]
{modules_lines(tree)}binaries = [{toml_string(facts.makedumpfile)}]
busybox = {toml_string(facts.busybox)}

{dump_table or local_dump_table(local_filesystem(facts))}
[crashkernel]
# This machine's RAM: the fit in each capture's fit.json is judged for it. The
# reservation itself comes from `kdump-build crashkernel --apply`.
ram = [{toml_string(ram)}]
"""


def local_filesystem(facts: HostFacts) -> DumpFilesystem:
    """The filesystem of /var/crash, probed unless enable was asked for a network target
    alone (then a `HostError`: nothing may dump there)."""
    if facts.dump_filesystem is None:
        raise HostError("the filesystem of /var/crash was not probed (a network target alone)")
    return facts.dump_filesystem


def local_dump_table(filesystem: DumpFilesystem) -> str:
    """The [dump] table of a dump to the filesystem that holds /var/crash."""
    return f"""\
[dump]
{local_keys(filesystem)}keep = {DEFAULT_KEEP}
"""


def local_keys(filesystem: DumpFilesystem) -> str:
    """The keys of a local dump to `filesystem`, with a comment saying which it is."""
    return f"""\
# The filesystem that holds /var/crash ({comment_text(filesystem.fstype)}, mounted at
# {comment_text(str(filesystem.mount_point))}).
target = "local"
device = {toml_string(filesystem.device, "dump.device")}
fstype = {toml_string(filesystem.fstype, "dump.fstype")}
path = {toml_string(filesystem.path, "dump.path")}
{stack_keys(filesystem)}"""


@dataclass(frozen=True)
class TreeChoices:
    """What `enable --root` fixes for a tree that has never run: no /sys to read the
    dump disk's drivers from, and an architecture that may not be the build host's."""

    arch: Arch
    modules: tuple[str, ...]


def target_lines(tree: TreeChoices | None) -> str:
    if tree is None:
        return ""
    return (f"\n[target]\n# The tree's own architecture (its dpkg's).\n"
            f"arch = {toml_string(tree.arch.value)}\n")  # fmt: skip


def modules_lines(tree: TreeChoices | None) -> str:
    if tree is None:
        return ('# The drivers this machine uses to reach the dump target (its disk, or '
                'the network\n# cards of the link to the server), read from its /sys.\n'
                'modules = "auto"\n')  # fmt: skip
    return ("# The tree has not run: its dump filesystem's module and the usual disk "
            "drivers.\n"
            f"modules = {toml_list(tree.modules, 'initrd.modules')}\n")  # fmt: skip


def stack_keys(filesystem: DumpFilesystem) -> str:
    """The [dump] lines for what the capture assembles first (none on a plain partition)."""
    lines = []
    if filesystem.stack.md_arrays:
        lines.append("# The md arrays beneath it, by UUID, assembled in this order.")
        lines.append(f"md_arrays = {toml_list(filesystem.stack.md_arrays, 'dump.md_arrays')}")
    if filesystem.stack.lvm_volume:
        lines.append("# The LVM logical volume it is on, by LV UUID: the only one activated.")
        lines.append(f"lvm_volume = {toml_string(filesystem.stack.lvm_volume, 'dump.lvm_volume')}")
    if filesystem.subvolume:
        lines.append(f"subvolume = {toml_string(filesystem.subvolume, 'dump.subvolume')}")
    return "".join(line + "\n" for line in lines)


def check_host_recipe(recipe: Recipe, root: Path) -> None:
    """`enable` builds one capture per installed kernel, from this machine's files."""
    if Path(recipe.source.root or ".").resolve() != root.resolve():
        raise HostError(
            f'{recipe.path}: source.root: enable builds from this machine (source.root = "{root}"),'
            " one capture per installed kernel"
        )


def for_kernel(recipe: Recipe, version: str, image: str | None = None) -> Recipe:
    """The recipe with `version`'s image as kernel.image: the main kernel, and the capture
    kernel when kernel.mode is reuse.

    >>> from pathlib import Path
    >>> from builder.recipe.parse import parse_recipe
    >>> text = '[source]\\nroot = "/"\\n[dump]\\ndevice = "LABEL=k"\\n'
    >>> for_kernel(parse_recipe(text, Path("r.toml")), "6.1.0-9-amd64").kernel.image
    '/boot/vmlinuz-6.1.0-9-amd64'
    """
    chosen = image or f"/boot/vmlinuz-{version}"
    return replace(recipe, kernel=replace(recipe.kernel, image=chosen))
