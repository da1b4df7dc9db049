"""Plain words for a machine that cannot load a crash kernel: why, and what to do."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from builder.errors import HostError
from builder.host.captures import read_record
from builder.kexec.method import Lockdown
from builder.kexec.syscalls import KexecStatus
from builder.kexecfs import KexecFile


@dataclass(frozen=True)
class Readiness:
    """The facts that decide whether a load can work (read by `read_readiness`)."""

    status: KexecStatus
    root: bool
    kexec_disabled: bool


def read_readiness(sys_kernel: Path = Path("/sys/kernel")) -> Readiness:
    # Imported here: at start-up, builder.kexec.syscalls would cost ~65 ms.
    from builder.kexec.syscalls import kexec_status

    disabled = Path("/proc/sys/kernel/kexec_load_disabled")
    try:
        off = disabled.read_text().strip() == "1"
    except OSError:
        off = False
    return Readiness(kexec_status(sys_kernel), os.geteuid() == 0, off)


def suggested_value(capture: Path | None) -> str | None:
    """The crashkernel= a capture asks for: its fit for this machine, else its fit.json's."""
    if capture is None:
        return None
    record = read_record(capture)
    if record is not None and record.recommended:
        return record.recommended
    try:
        recommended = json.loads((capture / "fit.json").read_text()).get("recommended")
    except (OSError, ValueError, AttributeError):
        return None
    return recommended if isinstance(recommended, str) else None


def problems(readiness: Readiness, value: str | None, *, segments: bool = False) -> list[str]:
    """What keeps a crash kernel from being loaded, most basic first; empty when nothing.

    >>> problems(Readiness(KexecStatus(False, 0, None), True, False), "256M")[0]
    'no memory is reserved for a crash kernel: boot with crashkernel=256M (kdump-build ...)'
    """
    status = readiness.status
    if status.loaded is None:
        return [
            f"this kernel has no kexec support for crash dumps (no "
            f"{KexecFile.CRASH_LOADED.described()}: built without CONFIG_KEXEC and "
            "CONFIG_CRASH_DUMP)"
        ]
    found = []
    if not status.crash_size:
        add = f"crashkernel={value}" if value else "crashkernel= (kdump-build crashkernel --show)"
        found.append(f"no memory is reserved for a crash kernel: boot with {add} "
                     "(kdump-build crashkernel --apply writes it for GRUB)")  # fmt: skip
    locked = status.lockdown in (Lockdown.INTEGRITY, Lockdown.CONFIDENTIALITY)
    if segments and locked and status.lockdown is not None:
        found.append(
            f"the kernel is locked down ({status.lockdown.value}): it refuses kexec_load; "
            "use --method file or auto (kexec_file_load with a signed kernel)"
        )
    if readiness.kexec_disabled:
        found.append("kexec is disabled until the next boot (kernel.kexec_load_disabled = 1)")
    if not readiness.root:
        found.append("loading a crash kernel needs root (run it as root)")
    return found


def check_ready(
    capture: Path | None, *, segments: bool = False, readiness: Readiness | None = None
) -> None:
    """A `HostError` naming every problem, in one line, before a load is tried."""
    found = problems(readiness or read_readiness(), suggested_value(capture), segments=segments)
    if found:
        raise HostError("; ".join(found))
