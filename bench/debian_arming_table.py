"""Arming a Debian 12 machine, kdump-build against kdump-tools: figures, table, docs section.

Pure: the files each guest wrote (bench/evidence/debian-arming.json keeps them) in,
seconds, ratios and Markdown out, so tests/unit/test_debian_arming.py checks
docs/performance.md against the stored run without a boot. `bench.debian_arming`
boots the guests and makes the store.

A unit's time at boot is systemd's own account of its start job: from
InactiveExitTimestampMonotonic (the unit left "inactive": its start began, conditions
and ExecStartPre included) to ActiveEnterTimestampMonotonic (it became "active": for
these two oneshot units with RemainAfterExit, when ExecStart had exited with success).
That is the span the boot waits on, and the same definition for both units whatever
each runs before its main process (kdump-build's ExecCondition, none for
kdump-tools); ExecMainStart/ExecMainExit, the main process alone, are stored beside
it as a cross-check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tests.support.debian_package import install_times, unit_times

HEADING = "## Arming a Debian 12 machine: kdump-build against Debian's kdump-tools"


class Tool(StrEnum):
    """The two sides, each on its own guest; the value is the evidence's key."""

    KDUMP_BUILD = "kdump-build"
    KDUMP_TOOLS = "kdump-tools"


# The boots after the install's: the first loads the capture for the first time, the
# second is every boot after it.
MEASURED_BOOTS = (2, 3)
# What each unit's journal says when it builds its capture during the boot (kdump-tools
# builds its initrd at the first load, not at install: kdump-config's load runs its
# kernel hook when /var/lib/kdump has no initrd for the running kernel).
BUILT_AT_BOOT = {
    Tool.KDUMP_BUILD: re.compile(r"rebuilding the capture for "),
    Tool.KDUMP_TOOLS: re.compile(r"Generating /var/lib/kdump/initrd\.img-"),
}
START = "InactiveExitTimestampMonotonic"
ACTIVE = "ActiveEnterTimestampMonotonic"


def start_to_loaded(times: Mapping[str, int]) -> float:
    """Seconds from the unit's start to active, from `systemctl show`'s microseconds.

    >>> start_to_loaded({"InactiveExitTimestampMonotonic": 7_250_000,
    ...                  "ActiveEnterTimestampMonotonic": 9_500_500})
    2.2505
    """
    start, active = times.get(START, 0), times.get(ACTIVE, 0)
    if start == 0 or active == 0:
        missing = START if start == 0 else ACTIVE
        raise ValueError(f"{missing} is 0: the unit never got that far in this boot")
    if active < start:
        raise ValueError(f"{ACTIVE} {active} before {START} {start}: a restart, not this boot's")
    return (active - start) / 1e6


@dataclass(frozen=True)
class BootLoad:
    """One boot's unit: start to loaded (s), its main process alone (s), the kernel's say,
    and whether the unit built the capture in this boot."""

    seconds: float
    main_process: float
    loaded: bool
    built: bool


@dataclass(frozen=True)
class Side:
    """One tool on its own guest: install and enable (s, guest clock), then each boot."""

    install: float
    enable: float
    boots: dict[int, BootLoad]

    @property
    def armed(self) -> float:
        return self.install + self.enable

    @property
    def armed_and_loaded(self) -> float:
        """Install, enable and the first boot's load: all a new user waits for."""
        return self.armed + self.boots[MEASURED_BOOTS[0]].seconds


def boot_load(side: Tool, out: Mapping[str, str], boot: int) -> BootLoad:
    """What `measure` in the guest wrote at `boot` for `side`'s unit."""
    prefix = f"measure-{boot}/"
    times = unit_times(out[prefix + "unit-times"])
    main = times["ExecMainExitTimestampMonotonic"] - times["ExecMainStartTimestampMonotonic"]
    loaded = (
        out[prefix + "crash-loaded"].strip() == "1"
        and out[prefix + "active"].strip() == "active"
        and times["ExecMainStatus"] == 0
    )
    built = bool(BUILT_AT_BOOT[side].search(out[prefix + "journal.txt"]))
    return BootLoad(start_to_loaded(times), main / 1e6, loaded, built)


def side_figures(side: Tool, out: Mapping[str, str]) -> Side:
    install, enable = install_times(out["install-times"])
    boots = {boot: boot_load(side, out, boot) for boot in MEASURED_BOOTS}
    return Side(round(install, 2), round(enable, 2), boots)


def figures(evidence: Mapping[str, Any]) -> dict[Tool, Side]:
    return {side: side_figures(side, evidence["sides"][side]["out"]) for side in Tool}


def ratio(theirs: float, ours: float) -> str:
    """kdump-tools' time over kdump-build's, said as which is faster.

    >>> ratio(30.0, 10.0), ratio(10.0, 40.0)
    ('3.00x (kdump-build faster)', '0.25x (kdump-build SLOWER)')
    """
    value = theirs / ours
    return f"{value:.2f}x (kdump-build {'faster' if value >= 1 else 'SLOWER'})"


def _boot_cell(load: BootLoad) -> str:
    notes = [] if load.loaded else ["NOT LOADED"]
    notes += ["capture built in this boot"] if load.built else []
    extra = f" ({', '.join(notes)})" if notes else ""
    return f"{load.seconds:.2f} s{extra}"


def _row(step: str, ours: float, theirs: float) -> tuple[str, str, str, str]:
    return step, f"{ours:.1f} s", f"{theirs:.1f} s", ratio(theirs, ours)


def table(found: Mapping[Tool, Side]) -> list[str]:
    """The Markdown table: each step's seconds for both tools and the ratio."""
    ours, theirs = found[Tool.KDUMP_BUILD], found[Tool.KDUMP_TOOLS]
    rows = [
        _row("`apt-get install` (offline, local .debs)", ours.install, theirs.install),
        ("`kdump-build enable` (kdump-tools: none, debconf's use_kdump=true)",
         f"{ours.enable:.1f} s", "-", "-"),
        _row("install + enable", ours.armed, theirs.armed),
    ]  # fmt: skip
    for number, boot in enumerate(MEASURED_BOOTS, start=1):
        mine, other = ours.boots[boot], theirs.boots[boot]
        step = f"boot {number} after the install: unit start to loaded (systemd)"
        rows.append((step, _boot_cell(mine), _boot_cell(other), ratio(other.seconds, mine.seconds)))
    rows.append(_row("install + enable + boot 1's load", ours.armed_and_loaded,
                     theirs.armed_and_loaded))  # fmt: skip
    header = "| step | kdump-build | kdump-tools | kdump-tools / kdump-build |"
    return [header, "|---|---|---|---|", *(f"| {' | '.join(row)} |" for row in rows)]


def main_process_lines(found: Mapping[Tool, Side]) -> list[str]:
    """The cross-check: each boot's main process alone (ExecMainStart to ExecMainExit)."""
    lines = []
    for side in Tool:
        boots = [f"boot {number} {found[side].boots[boot].main_process:.2f} s"
                 for number, boot in enumerate(MEASURED_BOOTS, start=1)]  # fmt: skip
        lines.append(f"- {side}: main process alone (ExecMainStart to ExecMainExit), "
                     + ", ".join(boots))  # fmt: skip
    return lines


def new_packages(apt_output: str) -> list[str]:
    r"""The packages apt says it newly installs (the share also holds .debs of libraries the
    image has at the same version, which apt leaves).

    >>> new_packages("The following NEW packages will be installed:\n  file kdump-tools\n"
    ...              "  libmagic1\n0 upgraded, 3 newly installed, 0 to remove\n")
    ['file', 'kdump-tools', 'libmagic1']
    """
    lines = apt_output.splitlines()
    start = lines.index("The following NEW packages will be installed:") + 1
    names = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        names += line.split()
    return names


def _installed(evidence: Mapping[str, Any], side: Tool) -> str:
    names = new_packages(evidence["sides"][side]["out"]["apt-install.txt"])
    return f"{' '.join(names)} ({len(names)} new packages)"


def _spread(found: Mapping[Tool, Side], side: Tool) -> str:
    """How far apart one side's two boots without a build are: the run's noise."""
    times = [load.seconds for load in found[side].boots.values() if not load.built]
    if len(times) < 2:
        return ""
    return (f"{side}'s boots 1 and 2 after the install do the same work and took "
            f"{times[0]:.2f} s and {times[1]:.2f} s ({max(times) / min(times):.2f}x apart): "
            "a single boot's ratio says no more than that spread. ")  # fmt: skip


def _crashkernel(evidence: Mapping[str, Any], side: Tool) -> str:
    words = evidence["sides"][side]["out"][f"measure-{MEASURED_BOOTS[0]}/cmdline"].split()
    return " ".join(word for word in words if word.startswith("crashkernel=")) or "none"


def _setup(evidence: Mapping[str, Any]) -> str:
    ours = evidence["packages"][Tool.KDUMP_BUILD][0]
    return (
        f"`{evidence['command']}` on {evidence['date']} ({evidence['machine']}). Two qcow2 "
        f"overlays of the same cached Debian 12 image (tests/support/debian_image.py, kernel "
        f"{evidence['kernel_version']}, booted through GRUB by QEMU TCG, 2 vCPUs, 2 GiB), "
        "one after the other in this one run, three boots each: install, reboot, reboot. "
        f"kdump-build: `apt-get install` of {ours} and its dependencies' .debs installed "
        f"{_installed(evidence, Tool.KDUMP_BUILD)}, then `kdump-build enable` built the "
        "capture and wrote its GRUB drop-in and grub.cfg. kdump-tools: debconf preseeded "
        "(kdump-tools/use_kdump true, kexec-tools/load_kexec false), then `apt-get install` "
        f"of Debian's .debs installed {_installed(evidence, Tool.KDUMP_TOOLS)}; its postinst "
        "writes /etc/default/kdump-tools and runs update-grub for its GRUB drop-in, and "
        "initramfs-tools' trigger (kdump-tools ships a hook) regenerates the main "
        "/boot/initrd.img, all inside the install time. Its unit's start at install finds "
        "no crashkernel= and stops before building, so its own initrd (initramfs-tools' "
        "mkinitramfs) is built by kdump-tools.service in the first boot (the table marks "
        "each boot whose unit built). kexec-tools and makedumpfile are in the image for "
        "both. Neither needs an admin step beyond the reboot."
    )


def _clock(found: Mapping[Tool, Side]) -> str:
    said = (
        "Install times are the guest's /proc/uptime around each command; a unit's time is "
        f"systemd's {START} to {ACTIVE} (its whole start job). Under TCG every absolute "
        "time is several times a real machine's, and the host ran other sessions' work: "
        "compare the ratios, measured in the same run on the same image, not the seconds. "
    )
    return (said + "".join(_spread(found, side) for side in Tool)).rstrip()


def section(evidence: Mapping[str, Any]) -> str:
    """The section docs/performance.md holds for the stored run (ends with a newline)."""
    found = figures(evidence)
    crashkernel = ", ".join(f"{side} `{_crashkernel(evidence, side)}`" for side in Tool)
    lines = [
        HEADING,
        "",
        _setup(evidence),
        "",
        _clock(found),
        "",
        f"crashkernel= at boot: {crashkernel}.",
        "",
        *table(found),
        "",
        *main_process_lines(found),
        "",
        "Each guest's files (apt's output, enable's, each boot's `systemctl show`, unit "
        "journal, /proc/cmdline and /sys/kernel/kexec_crash_loaded) are in "
        "[bench/evidence/debian-arming.json](../bench/evidence/debian-arming.json), the "
        "consoles in bench/evidence/debian-arming/.",
    ]
    return "\n".join(lines) + "\n"


def report(evidence: Mapping[str, Any]) -> list[str]:
    """What the bench prints: the table and the cross-check."""
    found = figures(evidence)
    return [f"machine: {evidence['machine']}", "", *table(found), "", *main_process_lines(found)]


def not_loaded(found: Mapping[Tool, Side]) -> Sequence[str]:
    """The boots whose unit did not load (empty when every one did)."""
    return [f"{side} boot {boot}" for side in Tool
            for boot, load in found[side].boots.items() if not load.loaded]  # fmt: skip
