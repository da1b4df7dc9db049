"""How a crash kernel is loaded: the methods, the choice `auto` makes, the kexec-tools twin.

Pure: the lockdown mode and whether the kernel has kexec_file_load come in
as values (builder.kexec.syscalls reads and probes them).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from builder.errors import LoadError

__all__ = [
    "FileLoad",
    "FileLoadProbe",
    "LoadMethod",
    "Lockdown",
    "MethodChoice",
    "choose_method",
    "kexec_tools_command",
    "parse_lockdown",
    "parse_method",
]


class LoadMethod(StrEnum):
    """How `load` hands the crash kernel to the running kernel."""

    SEGMENTS = "segments"  # kexec_load with our layout and purgatory
    FILE = "file"  # kexec_file_load: the kernel lays out (and may verify) the image itself
    AUTO = "auto"  # what the running kernel offers: FILE under lockdown, SEGMENTS otherwise


class Lockdown(StrEnum):
    """The kernel's lockdown mode (security/lockdown/lockdown.c)."""

    NONE = "none"
    INTEGRITY = "integrity"
    CONFIDENTIALITY = "confidentiality"


class FileLoad(StrEnum):
    """Whether the running kernel offers kexec_file_load (CONFIG_KEXEC_FILE)."""

    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FileLoadProbe:
    """What probing kexec_file_load found, and how (the errno it answered, say)."""

    state: FileLoad
    evidence: str

    def describe(self) -> str:
        """One phrase for messages.

        >>> FileLoadProbe(FileLoad.ABSENT, "ENOSYS").describe()
        'kexec_file_load is absent (ENOSYS)'
        """
        return f"kexec_file_load is {self.state.value} ({self.evidence})"


UNPROBED = FileLoadProbe(FileLoad.UNKNOWN, "not probed")


@dataclass(frozen=True)
class MethodChoice:
    """The method to use (never AUTO) and, when `auto` chose it, why."""

    method: LoadMethod
    reason: str | None


def parse_method(value: str, where: str = "--method") -> LoadMethod:
    """`value` as a `LoadMethod`; a `LoadError` naming `where` and the choices otherwise.

    >>> parse_method("file")
    <LoadMethod.FILE: 'file'>
    >>> parse_method("fast")
    Traceback (most recent call last):
    ...
    builder.errors.LoadError: --method: 'fast' is not one of segments, file, auto
    """
    try:
        return LoadMethod(value)
    except ValueError:
        choices = ", ".join(method.value for method in LoadMethod)
        raise LoadError(f"{where}: {value!r} is not one of {choices}") from None


def parse_lockdown(text: str) -> Lockdown | None:
    """The active mode in /sys/kernel/security/lockdown's text; None if none is marked.

    >>> parse_lockdown("none [integrity] confidentiality\\n")
    <Lockdown.INTEGRITY: 'integrity'>
    """
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            try:
                return Lockdown(word[1:-1])
            except ValueError:
                return None  # a mode this code does not know: as if unknown
    return None


def choose_method(
    requested: LoadMethod, lockdown: Lockdown | None, file_load: FileLoadProbe = UNPROBED
) -> MethodChoice:
    """Resolve `auto` from what the running kernel offers; the reason says what decided.

    Under lockdown kexec_load is refused, so the kernel's own loader, if the
    kernel has one; otherwise our segments with kexec_load. `lockdown` None
    means the kernel does not say (no securityfs lockdown file).

    >>> absent = FileLoadProbe(FileLoad.ABSENT, "ENOSYS")
    >>> choose_method(LoadMethod.AUTO, Lockdown.NONE, absent).reason
    'kernel lockdown is not active, kexec_file_load is absent (ENOSYS): using kexec_load ...'
    >>> choose_method(LoadMethod.AUTO, Lockdown.INTEGRITY).method
    <LoadMethod.FILE: 'file'>
    >>> choose_method(LoadMethod.SEGMENTS, Lockdown.INTEGRITY)
    MethodChoice(method=<LoadMethod.SEGMENTS: 'segments'>, reason=None)
    """
    if requested is not LoadMethod.AUTO:
        return MethodChoice(requested, None)
    if lockdown in (Lockdown.INTEGRITY, Lockdown.CONFIDENTIALITY):
        refused = f"kernel lockdown is {lockdown.value!r}: kexec_load is refused"
        if file_load.state is FileLoad.ABSENT:
            raise LoadError(
                f"{refused}, and {file_load.describe()}: this kernel cannot load a crash kernel"
            )
        return MethodChoice(
            LoadMethod.FILE,
            f"{refused}, so the kernel's own loader (kexec_file_load, signed image) is used",
        )
    unknown = "unknown (no /sys/kernel/security/lockdown)"
    state = "not active" if lockdown is Lockdown.NONE else unknown
    probed = "" if file_load is UNPROBED else f", {file_load.describe()}"
    return MethodChoice(
        LoadMethod.SEGMENTS,
        f"kernel lockdown is {state}{probed}: using kexec_load with our segments",
    )


def kexec_tools_command(kernel: Path, initrd: Path, cmdline: str, method: LoadMethod) -> str:
    """The kexec-tools command line that loads the same crash kernel (`auto` as segments).

    kexec-tools adds elfcorehdr= and the memory map itself, as our layout does.

    >>> kexec_tools_command(Path("out/vmlinuz"), Path("out/initrd.img"), "irqpoll", LoadMethod.FILE)
    'kexec -p -s out/vmlinuz --initrd=out/initrd.img --command-line=irqpoll'
    """
    words = ["kexec", "-p", *(["-s"] if method is LoadMethod.FILE else []),
             shlex.quote(str(kernel)),
             "--initrd=" + shlex.quote(str(initrd)),
             "--command-line=" + shlex.quote(cmdline)]  # fmt: skip
    return " ".join(words)
