"""Per-architecture layout planners, one row each (arm64 comes later)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from builder.errors import LayoutError
from builder.kexec.layout import KEXEC_ARCH_X86_64, Layout
from builder.kexec.layout.x86_64 import X86_64Inputs, plan_x86_64

__all__ = ["ARCHES", "ArchLayout", "arch_layout"]


@dataclass(frozen=True)
class ArchLayout:
    """How one architecture plans and loads a crash kernel."""

    name: str
    kexec_arch: int  # KEXEC_ARCH_* in the high 16 bits of kexec_load's flags
    kexec_load_syscall: int
    kexec_file_load_syscall: int | None
    plan: Callable[[X86_64Inputs], Layout]


ARCHES: dict[str, ArchLayout] = {
    "x86_64": ArchLayout("x86_64", KEXEC_ARCH_X86_64, 246, 320, plan_x86_64),
}


def arch_layout(name: str) -> ArchLayout:
    """The table row for `name`, or a LayoutError listing what exists."""
    try:
        return ARCHES[name]
    except KeyError:
        raise LayoutError(
            f"no crash layout for architecture {name!r} (have: {', '.join(sorted(ARCHES))})"
        ) from None
