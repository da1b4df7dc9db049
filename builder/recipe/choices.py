"""The recipe's choices: one enum per key whose value is one of a fixed set.

(`dump.target` is the exception: its values are the dump targets found in
builder/targets/, so adding one is adding its module.)
"""

from __future__ import annotations

from enum import StrEnum


class KernelMode(StrEnum):
    """`kernel.mode`: run the main kernel again, or a separate one."""

    REUSE = "reuse"
    DEDICATED = "dedicated"


class ModuleSelection(StrEnum):
    """`initrd.modules = "auto"`: the drivers the build host uses for the dump target."""

    AUTO = "auto"


class MicrocodeVendor(StrEnum):
    """`initrd.microcode`: whose x86 CPU microcode goes in the early cpio."""

    INTEL = "intel"
    AMD = "amd"


class Collector(StrEnum):
    """`dump.collector`: what writes the dump."""

    MAKEDUMPFILE = "makedumpfile"
    COPY = "copy"


class DumpCompression(StrEnum):
    """`dump.compression`: makedumpfile's page compression."""

    LZO = "lzo"
    ZLIB = "zlib"
    ZSTD = "zstd"
    NONE = "none"


class FinalAction(StrEnum):
    """`dump.final_action`: what the capture kernel does after a saved dump."""

    POWEROFF = "poweroff"
    REBOOT = "reboot"
    HALT = "halt"


class FailureAction(StrEnum):
    """`dump.failure_action`: what the capture kernel does when saving fails."""

    REBOOT = "reboot"
    POWEROFF = "poweroff"
    HALT = "halt"
    SHELL = "shell"
