"""Crash hotplug: whether the running kernel rewrites a loaded ELF core header itself.

A CPU or memory hot-add (or removal) after the load leaves the ELF core
header describing the old machine. Since v6.6 (CONFIG_CRASH_HOTPLUG), a
kernel that was told so rewrites the header of a `kexec_load` crash image
on every such event (kernel/crash_core.c, crash_handle_hotplug_event). The
loader's side of that contract, checked against the kernel sources:

- the flag: `KEXEC_UPDATE_ELFCOREHDR` (0x4, include/uapi/linux/kexec.h,
  v6.6). x86's arch_crash_hotplug_support accepts it or the later
  `KEXEC_CRASH_HOTPLUG_SUPPORT` (0x8, v6.10); only 0x4 is known to every
  kernel that has the feature, and a kernel without it refuses unknown flags
  with EINVAL. Which flag an architecture takes is `ArchInfo.crash_hotplug_flag`
  (None: the kernel cannot rewrite its header, or our planner does not support it);
- the segment: the kernel takes, at the first event, the LAST segment whose
  first bytes are the ELF magic (`\\x7fELF`) as the header, and refuses to
  write one larger than that segment's memsz (arch/x86/kernel/crash.c,
  arch_crash_handle_hotplug_event). Its new header has a PT_NOTE per
  possible CPU, vmcoreinfo, the kernel text and one PT_LOAD per System RAM
  range, so the segment is sized for all possible CPUs and, where memory
  hotplug is updated too, for `CRASH_MAX_MEMORY_RANGES` RAM ranges (the bound
  the kernel uses for its own kexec_file_load header);
- the digest: the purgatory must not verify that segment, or the first
  rewrite would make every later crash stop in the purgatory.

Where the kernel does it: `/sys/devices/system/cpu/crash_hotplug` exists
(CONFIG_CRASH_HOTPLUG with CONFIG_HOTPLUG_CPU) and
`/sys/devices/system/memory/crash_hotplug` (with CONFIG_MEMORY_HOTPLUG). Their
VALUE is whether the image loaded now gets rewritten (0 before any load, or
after a load without the flag), so their presence is the test, not a 1.
With `kexec_file_load` the kernel lays out the header itself and always
rewrites it: nothing of this applies there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.arch import Arch, arch_info
from builder.errors import LayoutError
from builder.kexec.crashinfo import CPU_DIR, CRASH_HOTPLUG_FILES, parse_cpu_list, present_cpus

__all__ = [
    "CPU_HOTPLUG_FILE",
    "CRASH_MAX_MEMORY_RANGES",
    "MEMORY_HOTPLUG_FILE",
    "CrashHotplug",
    "describe_hotplug",
    "header_room",
    "hotplug_notice",
    "read_crash_hotplug",
]

CPU_HOTPLUG_FILE, MEMORY_HOTPLUG_FILE = CRASH_HOTPLUG_FILES
# kernel/Kconfig.kexec CRASH_MAX_MEMORY_RANGES: default 8192 (Debian 13's and 14's
# amd64 kernels keep it): the RAM ranges the kernel's own header is sized for.
CRASH_MAX_MEMORY_RANGES = 8192
_NOTES_BESIDES_CPUS = 2  # the vmcoreinfo note and the kernel text PT_LOAD
_EHDR_SIZE = 64  # Elf64_Ehdr
_PHDR_SIZE = 56  # Elf64_Phdr


@dataclass(frozen=True)
class CrashHotplug:
    """The running kernel rewrites the ELF core header of a crash image loaded with `flag`."""

    flag: int  # the kexec_load flag that asks for it (ArchInfo.crash_hotplug_flag)
    possible_cpus: int  # /sys/devices/system/cpu/possible: every CPU that may come
    memory: bool  # memory hot(un)plug rewrites it too: room for CRASH_MAX_MEMORY_RANGES

    def to_json(self) -> dict[str, object]:
        return {"flag": self.flag, "possible_cpus": self.possible_cpus, "memory": self.memory}


def header_room(hotplug: CrashHotplug, ram_ranges: int) -> int:
    """Bytes the header segment must hold for any header the kernel may write.

    >>> header_room(CrashHotplug(4, possible_cpus=2, memory=False), ram_ranges=3)
    456
    >>> header_room(CrashHotplug(4, possible_cpus=2, memory=True), ram_ranges=3)
    459040
    """
    ranges = max(ram_ranges, CRASH_MAX_MEMORY_RANGES) if hotplug.memory else ram_ranges
    phdrs = hotplug.possible_cpus + _NOTES_BESIDES_CPUS + ranges
    return _EHDR_SIZE + _PHDR_SIZE * phdrs


def read_crash_hotplug(root: Path, arch: Arch) -> CrashHotplug | None:
    """What the kernel of `root` (``/`` live, or a `capture-sysfs` copy) rewrites; None: nothing.

    None where `arch` has no crash hotplug for `kexec_load`, or the kernel
    has neither sysfs file (before v6.6, or built without CONFIG_CRASH_HOTPLUG).
    """
    flag = arch_info(arch).crash_hotplug_flag
    cpus = (root / CPU_HOTPLUG_FILE).exists()
    memory = (root / MEMORY_HOTPLUG_FILE).exists()
    if flag is None or not (cpus or memory):
        return None
    path = root / CPU_DIR / "possible"
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise LayoutError(f"{path}: {error.strerror or error}") from None
    return CrashHotplug(flag, len(parse_cpu_list(text, str(path))), memory)


def hotplug_notice(root: Path, hotplug: CrashHotplug | None) -> str | None:
    """`describe_hotplug` for the kernel of `root` (its possible and present CPUs)."""
    path = root / CPU_DIR / "possible"
    try:
        possible = parse_cpu_list(path.read_text(errors="replace"), str(path))
    except OSError:
        return None  # nothing to add to what the load itself reports
    return describe_hotplug(hotplug, len(possible), len(present_cpus(root, possible)))


def describe_hotplug(hotplug: CrashHotplug | None, possible: int, present: int) -> str | None:
    """What `load` says about hotplug: the kernel keeps the header right, or who must.

    >>> print(describe_hotplug(None, possible=2, present=1))  # doctest: +ELLIPSIS
    1 of 2 possible CPUs not present yet: a crash on one hot-added later has no registers ...
    >>> describe_hotplug(None, possible=2, present=2) is None
    True
    """
    if hotplug is not None:
        return (
            "the kernel rewrites the ELF core header on CPU and memory hotplug "
            f"(flag {hotplug.flag:#x}); the purgatory does not verify it"
        )
    if present < possible:
        return (
            f"{possible - present} of {possible} possible CPUs not present yet: a crash on one "
            "hot-added later has no registers in the dump unless `load` runs again "
            "(this kernel does not rewrite the ELF core header; after `kdump-build enable` "
            "a udev rule reloads when a CPU or memory goes online or offline)"
        )
    return None
