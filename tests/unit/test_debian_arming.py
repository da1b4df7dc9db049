"""docs/performance.md's kdump-build against kdump-tools section is the stored run, whose
files carry the evidence; and the pure parts of bench/debian_arming_table.py on captured text.

bench/evidence/debian-arming.json is written by `python -m bench.debian_arming --write`
from two Debian 12 guests' files; docs/performance.md must hold exactly the section
`bench.debian_arming_table.section` makes from it, and what that section says of the
run (every boot loaded, where kdump-tools built its initrd, the crashkernel= GRUB
applied) must be what the stored files show.
"""

from __future__ import annotations

import doctest
import json
import lzma
from typing import Any

import pytest

from bench import debian_arming_table
from bench.debian_arming import CONSOLES, DOC, RESULTS, SCRIPTS
from bench.debian_arming_table import (
    MEASURED_BOOTS,
    BootLoad,
    Side,
    Tool,
    boot_load,
    figures,
    not_loaded,
    section,
    start_to_loaded,
    table,
)
from tests.support.debian_package import install_times, unit_times

# kdump-tools.service's `systemctl show -p ...` and journal in the first boot after its
# install, as the Debian 12 guest of the stored run wrote them (the properties in
# systemd's own order, not the order asked).
CAPTURED_SHOW = """\
ExecMainStartTimestampMonotonic=42313200
ExecMainExitTimestampMonotonic=358927489
ExecMainStatus=0
InactiveExitTimestampMonotonic=42316704
ActiveEnterTimestampMonotonic=358959669
"""
CAPTURED_JOURNAL = r"""\
[   42.317490] debvm systemd[1]: Starting kdump-tools.service - Kernel crash dump capture service...
[   59.937247] debvm kdump-tools[204]: Starting kdump-tools:
[   59.937247] debvm kdump-tools[215]: Creating symlink /var/lib/kdump/vmlinuz.
[   72.385169] debvm kdump-tools[253]: kdump-tools: Generating /var/lib/kdump/initrd.img-6.1.0-57-amd64
[  351.363673] debvm kdump-tools[215]: Creating symlink /var/lib/kdump/initrd.img.
[  357.984521] debvm kdump-tools[215]: loaded kdump kernel.
[  358.132572] debvm kdump-tools[2151]: /sbin/kexec -p --command-line="BOOT_IMAGE=/boot/vmlinuz-6.1.0-57-amd64 root=UUID=6b1f0a2e-5d7c-4c1e-9a53-2f0de1c0ffee ro console=ttyS0,115200 reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb" --initrd=/var/lib/kdump/initrd.img /var/lib/kdump/vmlinuz
[  358.468144] debvm kdump-tools[2152]: loaded kdump kernel
[  358.981673] debvm systemd[1]: Finished kdump-tools.service - Kernel crash dump capture service.
"""  # noqa: E501


@pytest.fixture(scope="module")
def evidence() -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(RESULTS.read_text())
    return stored


def captured_out(loaded: str = "1") -> dict[str, str]:
    boot = {"unit-times": CAPTURED_SHOW, "active": "active\n", "crash-loaded": f"{loaded}\n",
            "journal.txt": CAPTURED_JOURNAL, "cmdline": "ro crashkernel=384M-:128M\n"}  # fmt: skip
    out = {f"measure-{number}/{name}": text for number in MEASURED_BOOTS
           for name, text in boot.items()}  # fmt: skip
    return {**out, "install-times": "12.04 40.29 40.29\n"}


def test_start_to_loaded_is_systemds_start_job_on_captured_text() -> None:
    times = unit_times(CAPTURED_SHOW)
    assert start_to_loaded(times) == pytest.approx(316.642965)
    load = boot_load(Tool.KDUMP_TOOLS, captured_out(), 2)
    assert load.seconds == pytest.approx(316.642965)
    assert load.main_process == pytest.approx(316.614289)
    assert load.loaded and load.built
    assert not boot_load(Tool.KDUMP_TOOLS, captured_out(loaded="0"), 2).loaded
    assert not boot_load(Tool.KDUMP_BUILD, captured_out(), 2).built  # kdump-tools' words


def test_a_unit_that_never_started_or_restarted_is_refused() -> None:
    never = unit_times(CAPTURED_SHOW.replace("ActiveEnterTimestampMonotonic=358959669",
                                             "ActiveEnterTimestampMonotonic=0"))  # fmt: skip
    with pytest.raises(ValueError, match="ActiveEnterTimestampMonotonic is 0: the unit never"):
        start_to_loaded(never)
    restarted = {**unit_times(CAPTURED_SHOW), "InactiveExitTimestampMonotonic": 400_000_000}
    with pytest.raises(ValueError, match="before InactiveExitTimestampMonotonic 400000000"):
        start_to_loaded(restarted)


def test_the_table_shows_a_boot_that_did_not_load() -> None:
    ours = Side(
        20.0, 30.0, {2: BootLoad(2.0, 1.9, True, False), 3: BootLoad(2.0, 1.9, True, False)}
    )
    theirs = Side(
        10.0, 0.0, {2: BootLoad(80.0, 79.0, True, True), 3: BootLoad(4.0, 3.9, False, False)}
    )
    found = {Tool.KDUMP_BUILD: ours, Tool.KDUMP_TOOLS: theirs}
    lines = table(found)
    assert lines[2] == ("| `apt-get install` (offline, local .debs) | 20.0 s | 10.0 s | "
                        "0.50x (kdump-build SLOWER) |")  # fmt: skip
    assert lines[4] == "| install + enable | 50.0 s | 10.0 s | 0.20x (kdump-build SLOWER) |"
    assert (
        "| 2.00 s | 80.00 s (capture built in this boot) | 40.00x (kdump-build faster) |"
        in lines[5]
    )
    assert "| 4.00 s (NOT LOADED) | 2.00x" in lines[6]
    assert (
        lines[7]
        == "| install + enable + boot 1's load | 52.0 s | 90.0 s | 1.73x (kdump-build faster) |"
    )
    assert not_loaded(found) == ["kdump-tools boot 3"]


def test_the_doc_holds_the_stored_section(evidence: dict[str, Any]) -> None:
    assert section(evidence) in DOC.read_text(), "rerun: python -m bench.debian_arming --write"


def test_every_boot_of_both_loaded_the_capture_by_itself(evidence: dict[str, Any]) -> None:
    found = figures(evidence)
    assert not_loaded(found) == []
    for side in Tool:
        out = evidence["sides"][side]["out"]
        for boot in MEASURED_BOOTS:
            journal = out[f"measure-{boot}/journal.txt"]
            # One start, by systemd at boot: the guest script never starts a unit.
            assert journal.count("systemd[1]: Starting ") == 1, journal
            assert journal.count("systemd[1]: Finished ") == 1, journal
            assert int(out[f"measure-{boot}/crash-size"]) > 0
        assert install_times(out["install-times"])[0] > 0


def test_kdump_tools_builds_its_initrd_at_the_first_boot_not_at_install(
    evidence: dict[str, Any],
) -> None:
    """What the section says of where each tool builds, from the stored files."""
    tools = evidence["sides"][Tool.KDUMP_TOOLS]["out"]
    assert "initrd.img" not in tools["kdump-dir-after-install"]
    assert "Setting up kdump-tools (" in tools["apt-install.txt"]
    assert "USE_KDUMP=1" in tools["use-kdump"].splitlines()
    # The install time holds the main initrd's regeneration: kdump-tools' initramfs hook
    # triggers initramfs-tools (the section says so).
    assert "update-initramfs: Generating /boot/initrd.img-" in tools["apt-install.txt"]
    assert "crashkernel=384M-:128M" in tools["grub-dropin.cfg"]
    found = figures(evidence)
    assert [found[Tool.KDUMP_TOOLS].boots[boot].built for boot in MEASURED_BOOTS] == [True, False]
    assert "initrd.img-" + evidence["kernel_version"] in tools["kdump-dir"]
    ours = evidence["sides"][Tool.KDUMP_BUILD]["out"]
    assert "Setting up kdump-build (" in ours["apt-install.txt"]
    assert f"capture: /var/lib/kdump-build/{evidence['kernel_version']} built" in ours["enable.txt"]
    assert [found[Tool.KDUMP_BUILD].boots[boot].built for boot in MEASURED_BOOTS] == [False, False]


def test_the_grub_drop_ins_reached_the_kernel_command_line(evidence: dict[str, Any]) -> None:
    for side in Tool:
        out = evidence["sides"][side]["out"]
        value = out["grub-dropin.cfg"].split("crashkernel=")[1].split('"')[0].split()[0]
        for boot in MEASURED_BOOTS:
            assert f"crashkernel={value}" in out[f"measure-{boot}/cmdline"].split()


def test_the_stored_run_is_this_scripts_and_keeps_its_consoles(evidence: dict[str, Any]) -> None:
    assert evidence["command"].endswith("python -m bench.debian_arming --write")
    assert evidence["packages"][Tool.KDUMP_TOOLS][0].startswith("kdump-tools_")
    assert evidence["packages"][Tool.KDUMP_BUILD][0].startswith("kdump-build_")
    for side in Tool:
        # The guest ran this checkout's script: its trace names the unit it measured.
        assert f"measure {side}.service" in evidence["sides"][side]["out"]["boot-2.log"]
        assert "measure()" in SCRIPTS[side]
        console = lzma.decompress((CONSOLES / f"{side}.console.log.xz").read_bytes()).decode()
        assert console.count("debvm: script start") == len(MEASURED_BOOTS) + 1


def test_the_examples_run() -> None:
    """bench/ is outside the doctest collection: its examples run here."""
    result = doctest.testmod(debian_arming_table)
    assert result.attempted >= 3 and result.failed == 0
