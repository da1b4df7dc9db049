"""QEMU under TCG for tests and benchmarks: the command line, and one loop that watches
a guest's console until it powers off or a stop condition says why to end it.

Nested KVM hangs on the build machines, so every boot is TCG.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.arch import ARCHES, Arch

# QEMU user-mode network: the guest gets DHCP from QEMU and reaches the host's
# 127.0.0.1 as 10.0.2.2; nothing leaves the machine.
USER_NETWORK = ("-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")

# Called about once a second with the console so far and the seconds since it last
# grew; returns why to stop the guest, or None to let it run.
StopCondition = Callable[[str, float], str | None]


@dataclass(frozen=True)
class Boot:
    """What a QEMU run left behind: the console, QEMU's exit code (None when it was
    stopped), the wall time, why it was stopped ("" when the guest ended itself), and
    the command that ran (the evidence of a stored measurement names it)."""

    console: str
    returncode: int | None
    seconds: float
    stopped: str = ""
    command: tuple[str, ...] = ()


def tcg_accel(cpus: int) -> str:
    """The `-accel` value for a guest of `cpus` CPUs.

    More than one CPU runs in one host thread, in turn (`thread=single`). With a thread
    per CPU, a CPU can run a patch site's temporary int3 after the CPU that patched it
    is done: Debian 14's 7.2.12 then died at boot in CI with "Fatal exception in
    interrupt", RIP one byte into `__hrtimer_start_range_ns+0x63`, where the image has
    `jmp` (e9) and the console showed the patched nop (0f 1f 44 00 00), the int3 gone.
    One CPU keeps QEMU's default (stored measurements name that command).
    """
    return "tcg,thread=single" if cpus > 1 else "tcg"


def qemu_command(
    kernel: Path,
    initrd: Path,
    append: str,
    *,
    memory: str,
    cpus: int,
    log: Path,
    arch: Arch = Arch.X86_64,
    monitor: Path | None = None,
) -> list[str]:
    """QEMU for `arch` (its record's machine, CPU, firmware) under TCG, no display, the
    console on `log`, no reboot; the human monitor on the unix socket `monitor` if given."""
    machine = ARCHES[arch].qemu
    if machine is None:
        raise ValueError(f"no QEMU machine recorded for {arch}")
    return [
        machine.system,
        "-accel",
        tcg_accel(cpus),
        *(["-M", machine.machine] if machine.machine else []),
        *(["-cpu", machine.cpu] if machine.cpu else []),
        *machine.firmware,
        "-m",
        memory,
        "-smp",
        str(cpus),
        "-display",
        "none",
        "-monitor",
        f"unix:{monitor},server=on,wait=off" if monitor is not None else "none",
        "-serial",
        f"file:{log}",
        "-no-reboot",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        append,
    ]


def disk_qemu_command(
    disk: Path, fmt: str, *, memory: str, cpus: int, log: Path, share: tuple[Path, str] | None
) -> list[str]:
    """QEMU under TCG booting `disk` through its firmware (SeaBIOS, then the disk's boot
    loader), the console on `log`, no network, no reboot (a guest reboot ends QEMU).

    `share` = (directory, tag) exports a host directory over virtio 9p.
    """
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", memory, "-smp", str(cpus),
        # No CD-ROM, floppy, parallel port or VGA for the guest to probe.
        "-nodefaults", "-display", "none", "-monitor", "none", "-serial", f"file:{log}",
        "-no-reboot", "-nic", "none",
        "-drive", f"file={disk},format={fmt},if=virtio,cache=unsafe",
    ]  # fmt: skip
    if share is not None:
        directory, tag = share
        command += ["-virtfs", f"local,path={directory},mount_tag={tag},security_model=none"]
    return command


@dataclass
class Marks:
    """A stop condition that never stops: it notes when each pattern first showed on the
    console (to about a second: `watch` polls once a second), in seconds since `start`."""

    patterns: Mapping[str, re.Pattern[str]]
    start: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)

    def __call__(self, console: str, idle: float) -> str | None:
        now = time.monotonic() - self.start
        for name, pattern in self.patterns.items():
            if name not in self.seen and pattern.search(console):
                self.seen[name] = round(now, 1)
        return None


def watch(
    command: Sequence[str],
    log: Path,
    *,
    timeout: float,
    stop: StopCondition | None = None,
) -> Boot:
    """Run `command` until QEMU exits, `timeout` passes or `stop` gives a reason."""
    start = time.monotonic()
    reason = ""
    returncode: int | None = None
    last_size, last_change = -1, start
    with subprocess.Popen(
        list(command),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    ) as process:
        while True:
            try:
                returncode = process.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            console = _read(log)
            if len(console) != last_size:
                last_size, last_change = len(console), now
            if now - start > timeout:
                reason = f"timeout after {timeout:.0f} s"
            elif stop is not None:
                reason = stop(console, now - last_change) or ""
            if reason:
                process.kill()
                process.wait()
                returncode = None
                break
    return Boot(_read(log), returncode, time.monotonic() - start, reason, tuple(command))


def stop_after(text: str, seconds: float) -> StopCondition:
    """A stop condition: `seconds` after `text` first shows on the console.

    For runs that are expected to hang, such as a purgatory refusing to jump.
    """
    seen_at: list[float] = []

    def condition(console: str, idle: float) -> str | None:
        now = time.monotonic()
        if not seen_at and text in console:
            seen_at.append(now)
        if seen_at and now - seen_at[0] > seconds:
            return f"{seconds:.0f} s after {text!r}"
        return None

    return condition


def _read(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""
