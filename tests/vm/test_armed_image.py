"""A Debian 13 image armed at build time: mmdebstrap's tree, `enable --root`, first boot.

The image pipeline, played by the host:
  tree     Debian 13 made with mmdebstrap (tests.support.trixie_tree, cached), a list
           of its files, then the .deb of this checkout (scripts/build-deb) installed
           in it by the tree's own apt, offline (unshare --net; the dependencies' .debs
           of Debian 13 fetched when the tree was made)
  arm      README's documented `--customize-hook` command, `kdump-build enable --root`,
           run exactly as written on the tree; then `no_timer_check` added to the
           recipe it wrote and the same command again, which rebuilds (below)
  grub     grub.cfg written by the harness from the tree's etc/default/grub and its
           grub.d drop-ins, sourced by sh in grub-mkconfig's order (see grub_cfg)
  disk     partition, ext4 filled from the tree, GRUB's boot sectors (debian_image)

Then four QEMU runs, each boot a cold start through SeaBIOS and GRUB:
  boot 1   the FIRST boot of the image: nothing here starts the unit; its journal
           says it loaded and did not rebuild, and the capture's files still carry
           the times the host built them at; sysrq crash
  capture  saves /var/crash/<time>/ and reboots
  boot 2   `kdump-build dumps` lists it; `apt-get purge kdump-build`, and the file list
           against the tree's before the install; then, as on a running system: the
           .deb installed again with apt from the share (no network), `kdump-build
           enable` (its update-grub is Debian 13's own), reboot
  boot 3   the service loaded by itself again (its journal); `dpkg -S` names the
           package's unit, hooks, plugin and udev rule; sysrq crash
  capture  saves the second dump and reboots
  boot 4   `kdump-build dumps` lists both; power off (boot 2's purge, after a crash and
           its dump, ran the same postrm as a purge here would, update-grub included:
           one under TCG is ~1-2 min of CI saved)

Each crash first writes a line of its own to the kernel's log, so the host tells the
two vmcores apart. The host reads /var/crash with debugfs and checks both vmcores with
makedumpfile: the second is the Debian 13 system's own (apt install, enable, reboot,
crash), the first the armed image's.

Why the harness writes grub.cfg: update-grub in a chroot probes the build host's
devices, not the image's disk (there is none yet); writing the boot loader is the
pipeline's step, and the Debian 12 image's provisioning boot would be a boot before
the first one. The harness reads the kernel command line the way grub-mkconfig
does, so the drop-in `enable --root` wrote decides what GRUB passes; boot 2's
`enable` and purge then run Debian 13's own update-grub on the same drop-in.

Why `no_timer_check`: under TCG on a loaded host Debian 13's kernel, booted by kexec,
can miss the ticks of its IO-APIC timer check and panic (recipes/qemu-x86_64-trixie.toml,
test_next_kernels); a real machine does not need it. Editing the recipe and arming
again is what the recipe's own header says to do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.host import service
from tests.support import debian_guest, debian_image, trixie_tree
from tests.support.paths import REPO
from tests.vm import harness
from tests.vm.test_debian_system import compiled_dependency

pytestmark = pytest.mark.vm

RAM = "2G"  # the guests' memory (debian_guest boots them with 2G)
TIMER = "no_timer_check"
# Written to the kernel's log just before each crash: each vmcore says which crash it holds.
CRASH_LINES = {
    1: "kdump-build test: the armed image's first boot crashes",
    3: "kdump-build test: the crash after apt install, enable and reboot",
}

SCRIPT = (
    trixie_tree.FILES_SHELL
    + r"""
set -e
out=$DEBVM_OUT
version=$(uname -r)
capture=/var/lib/kdump-build/$version
unit_facts() {
    # Nothing here starts the unit: multi-user.target, which this script runs after,
    # waited for it.
    cat /proc/cmdline > $out/cmdline-$1
    systemctl is-active kdump-build.service > $out/unit-active-$1 || true
    journalctl -b -u kdump-build.service -o short-monotonic --no-pager > $out/unit-journal-$1.txt
    cat /sys/kernel/kexec_crash_loaded > $out/crash-loaded-$1
}
purge() {
    apt-get purge -y kdump-build > $out/apt-purge-$1.txt 2>&1
    dpkg -s kdump-build > $out/dpkg-status-$1 2>&1 || true
    files > $out/files-after-$1
}
listed() {
    kdump-build dumps > $out/dumps-$1.txt
    kdump-build dumps --json > $out/dumps-$1.json
}
crash() {
    echo "$1" > /dev/kmsg
    sync
    echo 1 > /proc/sys/kernel/sysrq
    echo c > /proc/sysrq-trigger
}
case "$DEBVM_BOOT" in
1)
    unit_facts 1
    (cd $capture && for name in $(ls -A); do stat -c '%n %Y %s' "$name"; done) \
        > $out/capture-stat-1
    kdump-build status > $out/status-1.txt || true
    crash "$(cat /run/debvm/crash-1)"
    ;;
2)
    listed 2
    dpkg -L $(cat /run/debvm/dependencies) | sort -u > $out/dependency-files
    purge 2
    apt-get install -y --no-install-recommends /run/debvm/deb/kdump-build_*_all.deb \
        > $out/apt-install-2.txt 2>&1 || { cat $out/apt-install-2.txt; exit 1; }
    kdump-build enable > $out/enable-2.txt 2>&1 || { cat $out/enable-2.txt; exit 1; }
    grep -h crashkernel= /boot/grub/grub.cfg > $out/grub-cfg-2 || true
    echo reboot > $out/next
    ;;
3)
    unit_facts 3
    dpkg -S $(cat /run/debvm/packaged) > $out/dpkg-owners-3.txt 2>&1 || true
    crash "$(cat /run/debvm/crash-3)"
    ;;
4)
    listed 4
    ;;
esac
"""
)


def documented_hook_command() -> str:
    """The `enable --root` command of README's mmdebstrap line, as written."""
    text = (REPO / "README.md").read_text()
    (command,) = re.findall(r"--customize-hook='(kdump-build enable --root [^']*)'", text)
    return str(command)


def arm(root: Path) -> str:
    """The documented hook command run on the tree (its $1), as mmdebstrap would."""
    # The build host's installed kdump-build: this checkout's, the version in the .deb.
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    command = ["sh", "-ec", documented_hook_command(), "sh", str(root)]
    result = subprocess.run(command, env=environment, capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def add_timer_option(recipe: Path) -> None:
    text = recipe.read_text()
    line = re.search(r"^cmdline_append = \[(.*)\]$", text, re.MULTILINE)
    assert line, text
    recipe.write_text(text.replace(line.group(0), f'cmdline_append = [{line.group(1)}, "{TIMER}"]'))


def capture_stat(capture: Path) -> list[str]:
    """`stat -c '%n %Y %s'` of the capture's files (name, mtime, size), sorted."""
    return sorted(f"{path.name} {int(path.stat().st_mtime)} {path.stat().st_size}"
                  for path in capture.iterdir())  # fmt: skip


@dataclass(frozen=True)
class Armed:
    """What the pipeline did to the tree, before the disk was made of it."""

    kernel_version: str
    arming: str
    rearming: str
    install: str
    dropin: str
    grub_cfg: str
    capture_stat: list[str]
    capture_cmdline: str
    files_before: str
    dependencies: list[str]


def prepare_tree(root: Path, debs: Path) -> Armed:
    """Install the .deb offline, arm, write grub.cfg: the pipeline's steps on the tree."""
    tree = trixie_tree.build_tree()
    trixie_tree.extract(tree, root)
    files_before = trixie_tree.chroot(root, trixie_tree.FILES_SHELL + "files")
    (deb,) = debs.glob("kdump-build_*_all.deb")
    dependencies = sorted(tree.deps.glob("*.deb"))
    install = trixie_tree.install_offline(root, [deb, *dependencies])
    arming = arm(root)
    add_timer_option(root / "etc/kdump-build/recipe.toml")
    rearming = arm(root)
    kernel_version = debian_image.tree_kernel_version(root)
    capture = root / "var/lib/kdump-build" / kernel_version
    cfg = trixie_tree.grub_cfg(root, kernel_version)
    (root / "boot/grub/grub.cfg").write_text(cfg)
    return Armed(
        kernel_version, arming, rearming, install,
        (root / "etc/default/grub.d/kdump-build.cfg").read_text(), cfg,
        capture_stat(capture), (capture / "cmdline.txt").read_text(), files_before,
        [path.name.split("_")[0] for path in dependencies],
    )  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    armed: Armed
    share: debian_guest.Share
    run: debian_guest.Run
    dumps: list[Path]
    work: Path
    prepare_seconds: float

    def out(self, name: str) -> str:
        path = self.share.path / "out" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def context(self) -> str:
        logs = "\n".join(self.share.log(boot) for boot in range(1, 5))
        return f"{logs[-3000:]}\n--- console\n{self.run.console[-4000:]}"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    work = tmp_path_factory.mktemp("armed-image")
    share = debian_guest.Share.create(work / "share", SCRIPT)
    built = subprocess.run([str(REPO / "scripts/build-deb"), str(share.path / "deb")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr
    root = work / "root"
    start = time.monotonic()
    try:
        armed = prepare_tree(root, share.path / "deb")
        debian_image.make_disk(root, work / "disk.raw")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    prepared = round(time.monotonic() - start, 1)
    (share.path / "dependencies").write_text(" ".join(armed.dependencies) + "\n")
    (share.path / "packaged").write_text(" ".join(f"/{path}" for path in PACKAGED) + "\n")
    for boot, line in CRASH_LINES.items():
        (share.path / f"crash-{boot}").write_text(line + "\n")
    run = debian_guest.boot_until_poweroff(work / "disk.raw", share, work / "console.log",
                                           fmt="raw", timeout=3600, boot_timeout=900)  # fmt: skip
    dumps = debian_guest.read_guest_tree(work / "disk.raw", "/var/crash", work / "crash")
    (work / "disk.raw").unlink()
    return Scenario(armed, share, run, dumps, work, prepared)


def test_the_tree_is_armed_offline_by_the_documented_command(scenario: Scenario) -> None:
    armed = scenario.armed
    assert "Setting up kdump-build (" in armed.install, armed.install
    capture = rf"capture: \S+/var/lib/kdump-build/{re.escape(armed.kernel_version)} \(needs"
    assert re.search(capture, armed.arming) and re.search(capture, armed.rearming), armed
    assert "at its first boot the service loads the capture" in armed.arming, armed.arming
    assert "(kept as it is" in armed.rearming, armed.rearming
    assert TIMER in armed.capture_cmdline.split(), "the second arming rebuilt the capture"
    value = armed.dropin.split("crashkernel=")[1].split('"')[0].split()[0]
    assert f"crashkernel={value}" in armed.grub_cfg.split(), armed.grub_cfg


def test_first_boot_loads_the_capture_without_building_it(scenario: Scenario) -> None:
    """Boot 1 never starts the unit, and the unit builds nothing: its journal, and the
    capture's files still as the host wrote them."""
    # Boot 1's script ends in the crash: no exit status, its files say what it saw.
    value = scenario.armed.dropin.split("crashkernel=")[1].split('"')[0].split()[0]
    assert f"crashkernel={value}" in scenario.out("cmdline-1").split(), scenario.context()
    journal = scenario.out("unit-journal-1.txt")
    assert journal.count("Starting kdump-build") == 1, journal
    assert re.search(r"kdump-build\[\d+\]: loaded .*with kexec_(file_)?load", journal), journal
    assert "rebuilding" not in journal and "built" not in journal, journal
    assert scenario.out("crash-loaded-1").strip() == "1", scenario.context()
    assert scenario.out("unit-active-1").strip() == "active"
    assert sorted(scenario.out("capture-stat-1").splitlines()) == scenario.armed.capture_stat
    status = scenario.out("status-1.txt")
    assert "crash kernel loaded: yes" in status and "(current)" in status, status


# The package's own files, by their paths on the installed system.
PACKAGED = ("usr/bin/kdump-build", *service.packaged_files())


def crash_logs(scenario: Scenario) -> dict[int, str]:
    """Each vmcore's kernel log as the host's makedumpfile reads it, by the boot that
    crashed (the line that boot wrote before its crash): the sysrq panic of the image's
    kernel in each."""
    vmcores = [path for path in scenario.dumps if path.name == "vmcore"]
    logs = {}
    for index, vmcore in enumerate(vmcores):
        log = harness.dump_dmesg(vmcore, scenario.work / f"host-dmesg-{index}.txt")
        (boot,) = (boot for boot, line in CRASH_LINES.items() if line in log)
        assert "Kernel panic - not syncing: sysrq triggered crash" in log, boot
        assert f"Linux version {scenario.armed.kernel_version}" in log, boot
        logs[boot] = log
    return logs


def test_the_host_reads_the_vmcore_of_each_crash(scenario: Scenario) -> None:
    """Boot 1's (the armed image's) and boot 3's (after apt install, enable, reboot)."""
    assert sorted(crash_logs(scenario)) == [1, 3], (scenario.dumps, scenario.context())


def test_the_first_boots_crash_is_saved_and_listed(scenario: Scenario) -> None:
    listed = json.loads(scenario.out("dumps-2.json"))
    assert len(listed) == 1 and listed[0]["complete"], listed
    assert listed[0]["kernel_version"] == scenario.armed.kernel_version
    assert "sysrq triggered crash" in scenario.out("dumps-2.txt")


# Gained between the tree's list and boot 2's, none of it kdump-build's: the pipeline's
# (grub.cfg, written after arming; mkfs.ext4's lost+found) and the first boot's (systemd's
# ConditionNeedsUpdate stamps; grub-common.service's grub-editenv makes grubenv).
NOT_OURS = {"/boot/grub/grub.cfg", "/lost+found", "/etc/.updated", "/var/.updated",
            "/boot/grub/grubenv"}  # fmt: skip


def gained_files(before: str, after: str, dependencies: set[str]) -> list[str]:
    """Paths in `after` but not in `before`, but for the dumps, the dependencies' files
    (purge leaves what apt installed with the package) and their byte code."""
    gained = set(after.splitlines()) - set(before.splitlines()) - NOT_OURS
    return sorted(
        path for path in gained
        if path not in dependencies and not path.startswith("/var/crash")
        and not compiled_dependency(path, dependencies)
    )  # fmt: skip


def test_purge_leaves_the_tree_as_before_the_install_but_the_dumps(scenario: Scenario) -> None:
    purge = scenario.out("apt-purge-2.txt")
    assert "Purging configuration files for kdump-build" in purge, scenario.context()
    # Debian 13's dpkg tried to remove /lib/systemd/system (merged /usr: /usr/lib's) while
    # the package shipped its unit there: "directory ... not empty so not removed".
    assert "dpkg: warning" not in purge, purge
    assert "is not installed" in scenario.out("dpkg-status-2")
    dependencies = set(scenario.out("dependency-files").splitlines())
    before, after = scenario.armed.files_before, scenario.out("files-after-2")
    assert gained_files(before, after, dependencies) == []
    assert sorted(set(before.splitlines()) - set(after.splitlines())) == []
    assert any(path.endswith("/vmcore") for path in after.splitlines())


def test_enable_on_the_running_system_then_the_unit_loads_at_boot(scenario: Scenario) -> None:
    assert scenario.share.results().get(2) == 0, scenario.context()
    assert "Setting up kdump-build (" in scenario.out("apt-install-2.txt")
    enable = scenario.out("enable-2.txt")
    capture = f"capture: /var/lib/kdump-build/{scenario.armed.kernel_version} built"
    assert capture in enable and "switched on" in enable, enable
    # The reservation boot 1 was booted with fits this capture too: enable says so (and
    # loads it now); the reboot below is the issue's, the unit's load at boot its proof.
    assert "reservation: crashkernel=" in enable, enable
    assert "crashkernel=" in scenario.out("grub-cfg-2"), "Debian 13's update-grub took it"
    # Boot 3's script ends in the crash: no exit status, its files say what it saw.
    journal = scenario.out("unit-journal-3.txt")
    assert journal.count("Starting kdump-build") == 1, journal
    assert re.search(r"kdump-build\[\d+\]: loaded .*with kexec_(file_)?load", journal), journal
    assert scenario.out("crash-loaded-3").strip() == "1", scenario.context()
    owners = scenario.out("dpkg-owners-3.txt").splitlines()
    assert sorted(owners) == sorted(f"kdump-build: /{path}" for path in PACKAGED), owners


def test_the_crash_after_the_online_enable_is_saved_and_listed(scenario: Scenario) -> None:
    assert scenario.share.results().get(4) == 0, scenario.context()
    listed = json.loads(scenario.out("dumps-4.json"))
    assert len(listed) == 2 and all(dump["complete"] for dump in listed), listed
    (first,) = json.loads(scenario.out("dumps-2.json"))
    (new,) = [dump for dump in listed if dump["path"] != first["path"]]
    assert new["kernel_version"] == scenario.armed.kernel_version, listed
    assert "sysrq triggered crash" in str(new["panic"]), listed
    assert scenario.out("dumps-4.txt").count("sysrq triggered crash") == 2


def unit_seconds(journal: str) -> float:
    """From the unit's start to its finish, by the journal's monotonic stamps."""
    stamps = {word: float(stamp) for stamp, word in
              re.findall(r"^\[\s*([\d.]+)\] \S+ systemd\[1\]: (Starting|Finished) kdump-build",
                         journal, re.MULTILINE)}  # fmt: skip
    return round(stamps["Finished"] - stamps["Starting"], 1)


def test_timings_are_recorded(scenario: Scenario) -> None:
    """Seconds: the pipeline's steps on the host, the unit at the first boot and at boot 3
    (start to loaded, under TCG), panic to saved (both crashes), each QEMU run and the
    whole run."""
    # QEMU runs: boot 1 and its capture, boot 2, boot 3 and its capture, boot 4.
    first, _, third, *_ = scenario.run.marks
    timings: dict[str, float] = {
        "prepare_tree_arm_and_disk": scenario.prepare_seconds,
        "unit_first_boot": unit_seconds(scenario.out("unit-journal-1.txt")),
        "unit_boot_3": unit_seconds(scenario.out("unit-journal-3.txt")),
        "panic_to_saved": round(first["saved"] - first["panic"], 1),
        "panic_to_saved_boot_3": round(third["saved"] - third["panic"], 1),
        "whole_run": scenario.run.seconds,
    }
    for index, marks in enumerate(scenario.run.marks, start=1):
        timings.update({f"run_{index}_{name}": round(seen, 1) for name, seen in marks.items()})
    (scenario.work / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(f"armed image timings: {timings}")
    assert 0 < timings["panic_to_saved"] < timings["whole_run"]
    assert 0 < timings["panic_to_saved_boot_3"] < timings["whole_run"]
    assert timings["unit_first_boot"] > 0 and timings["unit_boot_3"] > 0
