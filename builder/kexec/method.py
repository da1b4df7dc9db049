"""How a crash kernel is loaded: the methods, the choice under lockdown, the kexec-tools twin.

Pure: the lockdown mode comes in as a value (builder.kexec.syscalls reads it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from builder.errors import LoadError

__all__ = [
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
    AUTO = "auto"  # FILE under lockdown, SEGMENTS otherwise


class Lockdown(StrEnum):
    """The kernel's lockdown mode (security/lockdown/lockdown.c)."""

    NONE = "none"
    INTEGRITY = "integrity"
    CONFIDENTIALITY = "confidentiality"


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


def choose_method(requested: LoadMethod, lockdown: Lockdown | None) -> MethodChoice:
    """Resolve `auto`: under lockdown kexec_load is refused, so the kernel's own loader.

    `lockdown` None means the kernel does not say (no securityfs lockdown file).

    >>> choose_method(LoadMethod.AUTO, Lockdown.INTEGRITY).method
    <LoadMethod.FILE: 'file'>
    >>> choose_method(LoadMethod.AUTO, None).reason
    'kernel lockdown is unknown (no /sys/kernel/security/lockdown): using kexec_load ...'
    >>> choose_method(LoadMethod.SEGMENTS, Lockdown.INTEGRITY)
    MethodChoice(method=<LoadMethod.SEGMENTS: 'segments'>, reason=None)
    """
    if requested is not LoadMethod.AUTO:
        return MethodChoice(requested, None)
    if lockdown in (Lockdown.INTEGRITY, Lockdown.CONFIDENTIALITY):
        return MethodChoice(
            LoadMethod.FILE,
            f"kernel lockdown is {lockdown.value!r}: kexec_load is refused, so the kernel's "
            "own loader (kexec_file_load, signed image) is used",
        )
    unknown = "unknown (no /sys/kernel/security/lockdown)"
    state = "not active" if lockdown is Lockdown.NONE else unknown
    return MethodChoice(
        LoadMethod.SEGMENTS, f"kernel lockdown is {state}: using kexec_load with our segments"
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
