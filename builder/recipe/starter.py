"""The recipe `kdump-build init` writes: complete, commented, and buildable as it is.

It names Debian packages (fetched for the architecture and release, so it
builds on any host), keeps every key a capture needs to reach its target (the
drivers, a console, `panic=`, the collector) and says beside each what to
change for a real machine. Values go through the one TOML writer
(`builder.recipe.text`), the same as `enable`'s host recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.arch import Arch, arch_info
from builder.recipe.dump import TargetKind
from builder.recipe.text import comment_text, toml_list, toml_string

# What every capture's command line needs, and why (docs/targets.md).
# No cma=: the build adds cma=0 where the capture kernel's config can reserve a
# CMA area (builder/image/cmdline.py), on every architecture.
BASE_CMDLINE = ("irqpoll", "nr_cpus=1", "reset_devices", "panic=10")


@dataclass(frozen=True)
class StarterChoice:
    """What `init` was asked for."""

    target: TargetKind
    arch: Arch
    release: str  # a Debian release name; empty: the host's apt sources


def _console(arch: Arch) -> str:
    machine = arch_info(arch).qemu
    return f"console={machine.console}" if machine is not None else "console=ttyS0"


def _name(choice: StarterChoice) -> str:
    release = f"-{choice.release}" if choice.release else ""
    return f"{choice.target.name}-{arch_info(choice.arch).debian}{release}"


def _packages(choice: StarterChoice) -> tuple[str, ...]:
    kernel = f"linux-image-{arch_info(choice.arch).debian}"
    return (kernel, "busybox-static", "makedumpfile", *choice.target.starter.packages,
            "base-files")  # fmt: skip


def starter_recipe_text(choice: StarterChoice) -> str:
    """The recipe for `choice`, deterministic in it.

    >>> from builder.targets import target_kind
    >>> text = starter_recipe_text(StarterChoice(target_kind("raw"), Arch.X86_64, ""))
    >>> 'name = "raw-amd64"' in text, '"panic=10"' in text
    (True, True)
    """
    info = arch_info(choice.arch)
    release = choice.release or "(the host's apt sources)"
    return f"""\
# A kdump-build recipe written by `kdump-build init`: {comment_text(_name(choice))}.
# Every key is in docs/recipe.md; `kdump-build {comment_text(_name(choice))}.toml` builds it.
name = {toml_string(_name(choice), "name")}

[target]
arch = {toml_string(choice.arch.value, "target.arch")}

[source]
# Debian {comment_text(release)} packages for {info.debian}, fetched with apt into
# the cache and read in place; their shared libraries come with them.
# base-files: a merged-/usr release's /bin, /lib and /sbin links.
release = {toml_string(choice.release, "source.release")}
packages = {toml_list(_packages(choice), "source.packages")}

[kernel]
# The running kernel's own image is the capture kernel (it must be relocatable).
mode = "reuse"
image = "/boot/vmlinu?-*"
# irqpoll, nr_cpus=1, reset_devices: a capture kernel's usual start on hardware the
# crashed kernel left busy. panic=10: a panic of the capture resets the machine
# instead of hanging it. (cma=0 is added by the build where the kernel's config
# would carve a CMA area out of the reservation.)
cmdline = {toml_list(BASE_CMDLINE, "kernel.cmdline")}
# Where the capture logs: QEMU's serial port here; use your machine's console=
# (see /proc/cmdline).
cmdline_append = {toml_list((_console(choice.arch),), "kernel.cmdline_append")}

[initrd]
# The drivers of QEMU's virtio devices. On your machine: its disk or network
# driver (lsmod; e.g. nvme, ahci, e1000e), or modules = "auto" with
# source.root = "/" to take the ones this machine uses.
modules = {toml_list(choice.target.starter.modules, "initrd.modules")}
binaries = ["/usr/bin/makedumpfile"]
busybox = "/bin/busybox"

[dump]
target = {toml_string(choice.target.name, "dump.target")}
{choice.target.starter.keys}collector = "makedumpfile"
final_action = "reboot"

[crashkernel]
# The reservation the main kernel boots with; the build's fit.json says whether
# the capture fits it and recommends the smallest one that does.
reserve = "192M"
"""
