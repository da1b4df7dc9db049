"""A real Debian 12 system: kdump-build's .deb installed with apt, enabled, crashed, read back.

The system (tests.support.debian_image: built from Debian packages, cached) boots
through GRUB from its own disk, with systemd. One run of four QEMU processes:

  boot 1   a list of every file; `apt-get install` of the .deb that scripts/build-deb
           made on the host, offline (its Python dependencies' .debs come along in the
           share); `kdump-build enable`; both timed; reboot
  boot 2   GRUB applied crashkernel=; the unit ran at boot by itself (never started by
           hand here): its journal, its timestamps and kexec_crash_loaded say so; then
           `systemctl stop` unloads and `systemctl start` loads again; cpu1 offline and
           online again, first with the package's udev rule set aside (nothing reloads),
           then with it (the unit reloads: 6.1 has no crash hotplug); sysrq crash
  capture  saves /var/crash/<time>/ on the root filesystem and reboots
  boot 3   `kdump-build dumps`; a second kernel package (Debian's cloud flavour of the
           same ABI, fetched on the host) installed with dpkg, which runs the package's
           hook, then removed and purged; two upgrades with apt (.debs built on the host
           from copies of this tree): one whose capture /init differs, whose postinst
           rebuilds the capture, and one with the same /init, which rebuilds nothing;
           `apt-get purge kdump-build`, and the file list again; power off

The system's root, and so /var/crash, is an LVM logical volume, as the Debian installer's
guided LVM lays it out; `enable` finds that by itself. The host then finds the volume in
the disk image from its LVM2 metadata (tests.support.lvm_layout, not kdump-build's code),
reads /var/crash from there with debugfs and checks the vmcore with makedumpfile
--dump-dmesg, independently of the guest.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.image.fetch import fetch_packages
from tests.support import debian_guest, debian_image, lvm_layout
from tests.support.debian_package import INSTALL_SH, install_times, package_debs, unit_times
from tests.support.paths import REPO
from tests.vm import harness

pytestmark = pytest.mark.vm

SCRIPT = (
    r"""
set -e
out=$DEBVM_OUT
"""
    + INSTALL_SH
    + r"""
# Every file of the system, but for the kernel's, apt's and dpkg's own state and logs.
files() {
    find / -xdev \( -path /proc -o -path /sys -o -path /run -o -path /dev -o -path /tmp \
        -o -path /var/tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/apt \
        -o -path /var/lib/dpkg -o -path /var/lib/systemd \) -prune -o -print | sort
}
case "$DEBVM_BOOT" in
1)
    # The kernel package's own initrd is not what boot 3 checks (our capture brings its
    # own); skipping update-initramfs there saves ~95 s of TCG time.
    dpkg-divert --local --rename --add /usr/sbin/update-initramfs
    ln -s /bin/true /usr/sbin/update-initramfs
    files > $out/files-before
    install_and_enable
    dpkg -S /usr/lib/systemd/system/kdump-build.service /etc/kernel/postinst.d/kdump-build \
        /etc/kernel/postrm.d/kdump-build /usr/lib/kernel/install.d/60-kdump-build.install \
        > $out/dpkg-owners.txt
    systemctl is-enabled kdump-build.service > $out/unit-enabled || true
    command -v kdump-build > $out/which
    kdump-build load /var/lib/kdump-build/$(uname -r) > $out/load-boot1.txt 2>&1 || true
    kdump-build status > $out/status-boot1.txt || echo $? > $out/status-boot1-rc
    cp /etc/default/grub.d/kdump-build.cfg $out/grub-dropin.cfg
    # Root on LVM: what enable made of it, and what the fit model says.
    cp /etc/kdump-build/recipe.toml $out/recipe.toml
    cp /var/lib/kdump-build/$(uname -r)/manifest.json $out/capture-manifest.json
    kdump-build crashkernel > $out/crashkernel.txt 2>&1 || echo "rc $?" >> $out/crashkernel.txt
    echo reboot > $out/next
    ;;
2)
    cat /proc/cmdline > $out/cmdline
    # Nothing here starts the unit: multi-user.target, which this script runs after, waited
    # for it. Its journal and timestamps are this boot's.
    systemctl is-active kdump-build.service > $out/unit-active || true
    journalctl -b -u kdump-build.service -o short-monotonic --no-pager > $out/unit-journal.txt
    systemctl show -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic \
        -p ExecMainStatus kdump-build.service > $out/unit-times
    cat /sys/kernel/kexec_crash_loaded > $out/crash-loaded
    systemctl stop kdump-build.service
    cat /sys/kernel/kexec_crash_loaded > $out/crash-loaded-after-stop
    systemctl start kdump-build.service
    cat /sys/kernel/kexec_crash_loaded > $out/crash-loaded-after-start
    kdump-build status > $out/status.txt
    # CPU hotplug under the real udev: the package's rule, not this script, reloads the unit.
    test -e /sys/devices/system/cpu/cpu1/online  # a second vCPU (debian_guest boots two)
    # The control first: the same events with the rule set aside (udev reads *.rules only).
    rule=/usr/lib/udev/rules.d/98-kdump-build.rules
    mv $rule $rule.off && udevadm control --reload
    now > $out/control-mark
    echo 0 > /sys/devices/system/cpu/cpu1/online
    echo 1 > /sys/devices/system/cpu/cpu1/online
    udevadm settle
    sleep 3
    mv $rule.off $rule && udevadm control --reload
    now > $out/hotplug-mark
    echo 0 > /sys/devices/system/cpu/cpu1/online
    cat /sys/devices/system/cpu/online > $out/cpus-online-while-offline
    echo 1 > /sys/devices/system/cpu/cpu1/online
    udevadm settle  # the rule's programs ran: any job they queue is in systemd's list
    for _ in $(seq 300); do
        [ -z "$(systemctl list-jobs --no-legend kdump-build.service)" ] && break
        sleep 1
    done
    systemctl is-active kdump-build.service > $out/unit-active-after-hotplug || true
    journalctl -b -u kdump-build.service -o short-monotonic --no-pager > $out/hotplug-journal.txt
    cat /sys/kernel/kexec_crash_loaded > $out/crash-loaded-after-hotplug
    sync
    echo 1 > /proc/sys/kernel/sysrq
    echo c > /proc/sysrq-trigger
    ;;
3)
    # Root on LVM: where /var/crash is (the capture made it: it is there from the dump on).
    findmnt -no SOURCE -T /var/crash > $out/var-crash-source
    lsblk -rno NAME,TYPE,MOUNTPOINT > $out/lsblk.txt
    kdump-build dumps > $out/dumps.txt
    kdump-build dumps --json > $out/dumps.json
    deb=$(ls /run/debvm/debs/*.deb)
    package=$(dpkg-deb -f "$deb" Package)
    version=${package#linux-image-}
    echo "$version" > $out/second-kernel
    dpkg -i "$deb" > $out/dpkg-install.txt 2>&1
    ls /var/lib/kdump-build/ > $out/after-install
    cp /var/lib/kdump-build/$version/manifest.json $out/second-manifest.json
    dpkg -r "$package" > $out/dpkg-remove.txt 2>&1
    dpkg -P "$package" >> $out/dpkg-remove.txt 2>&1
    ls /var/lib/kdump-build/ > $out/after-remove
    dpkg -L python3-typer python3-click python3-colorama python3-zstandard \
        python3-cffi-backend python3-libarchive-c python3-lz4 | sort -u > $out/dependency-files
    # Package upgrades: the product's postinst rebuilds what changed; this only installs.
    initrd=/var/lib/kdump-build/$(uname -r)/initrd.img
    sha256sum $initrd > $out/initrd-sums
    for upgrade in init-changed init-same; do
        apt-get install -y --no-install-recommends /run/debvm/upgrade/$upgrade/*.deb \
            > $out/upgrade-$upgrade.txt 2>&1 || { cat $out/upgrade-$upgrade.txt; exit 1; }
        sha256sum $initrd >> $out/initrd-sums
        dpkg-query -W kdump-build >> $out/upgraded-versions
    done
    cat /sys/kernel/kexec_crash_loaded > $out/crash-loaded-after-upgrades
    apt-get purge -y kdump-build > $out/apt-purge.txt 2>&1
    dpkg -s kdump-build > $out/dpkg-status-after-purge 2>&1 || true
    files > $out/files-after
    ;;
esac
"""
)


# What the file list may gain between before the install and after the purge, none of it
# kdump-build's: besides the dependencies apt installed with it (purge leaves them) and
# Python's byte code for them, the dumps.
KEPT_PREFIXES = ("/var/crash",)


def compiled_dependency(path: str, dependencies: set[str]) -> bool:
    """Python's byte code of a dependency's module (py3compile writes it at install)."""
    if path.endswith("/__pycache__"):
        return path.rsplit("/", 1)[0] in dependencies
    folder, _, name = path.rpartition("/__pycache__/")
    return bool(folder) and any(f"{folder}/{name.split('.')[0]}.py" == dependency
                                for dependency in dependencies)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    share: debian_guest.Share
    run: debian_guest.Run
    dumps: list[Path]
    image: debian_image.Image
    work: Path
    root_volume: lvm_layout.LogicalVolume

    def out(self, name: str) -> str:
        path = self.share.path / "out" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def unit_times(self) -> dict[str, int]:
        """systemctl show's properties of the unit in boot 2 (microseconds since boot)."""
        return unit_times(self.out("unit-times"))

    def timings(self) -> dict[str, float]:
        """Seconds: apt install and enable (guest clock), the unit at boot (start to
        loaded, systemd's timestamps), panic to saved and panic to the third boot's script
        (the autologin console is up by then), from the console marks."""
        install, enable = install_times(self.out("install-times"))
        unit = self.unit_times()
        crashed, third = self.run.marks[1], self.run.marks[2]
        loaded = unit["ActiveEnterTimestampMonotonic"] - unit["InactiveExitTimestampMonotonic"]
        return {
            "apt_install": round(install, 1),
            "enable": round(enable, 1),
            "unit_start_to_loaded": round(loaded / 1e6, 2),
            "panic_to_saved": round(crashed["saved"] - crashed["panic"], 1),
            "panic_to_login": round(third["script"] - crashed["panic"], 1),
            "whole_run": self.run.seconds,
        }

    def context(self) -> str:
        logs = "\n".join(self.share.log(boot) for boot in range(1, 4))
        return f"{logs[-3000:]}\n--- console\n{self.run.console[-4000:]}"


def second_kernel_deb(kernel_version: str, destination: Path) -> Path:
    """Debian's cloud flavour of the image's kernel ABI, fetched on the host."""
    abi = kernel_version.removesuffix("-amd64")
    (package,) = fetch_packages([f"linux-image-{abi}-cloud-amd64"], "x86_64")
    destination.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(package.path, destination / package.path.name))


# Boot 3's upgrades, in order, with the Debian version suffix each gets: both add this
# line to the capture's /init, so the first changes it and the second does not.
UPGRADES = (("init-changed", "+upgrade1"), ("init-same", "+upgrade2"))
INIT_LINE = "# kdump-build upgrade test: a changed /init"


def upgrade_deb(share: Path, name: str, suffix: str) -> Path:
    """A newer .deb built by scripts/build-deb in a copy of this tree: this version with
    `suffix`, and INIT_LINE at the end of the capture's /init."""
    tree = share.parent / f"tree-{name}"
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True)  # fmt: skip
    for relative in filter(None, listed.stdout.decode().split("\0")):
        if (REPO / relative).is_file():
            (tree / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, tree / relative)
    # build-deb copies what git lists: in a fresh repository, every file as untracked.
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    init = tree / "builder/image/runtime/init.sh"
    init.write_text(init.read_text() + INIT_LINE + "\n")
    changelog = tree / "debian/changelog"
    header = re.fullmatch(r"(\S+) \((\S+)\) (.*)", changelog.read_text().splitlines()[0])
    assert header is not None, changelog
    package, version, rest = header.groups()
    entry = (f"{package} ({version}{suffix}) {rest}\n\n  * Upgrade test build.\n\n"
             " -- kdump-build maintainers <maintainers@users.noreply.r-seed-cca3ebbd.example>  "
             "Mon, 07 Dec 2026 00:00:00 +0000\n\n")  # fmt: skip
    changelog.write_text(entry + changelog.read_text())
    result = subprocess.run([str(tree / "scripts" / "build-deb"), str(share / "upgrade" / name)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    shutil.rmtree(tree)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    work = tmp_path_factory.mktemp("debian-system")
    image = debian_image.build_image()
    share = debian_guest.Share.create(work / "share", SCRIPT)
    package_debs(share.path)
    for name, suffix in UPGRADES:
        upgrade_deb(share.path, name, suffix)
    second_kernel_deb(image.kernel_version, share.path / "debs")
    overlay = debian_guest.make_overlay(image.base, work / "overlay.qcow2")
    # Boot 1 installs, builds a capture and runs update-grub under TCG: a busy host needs
    # more than the default 300 s a boot.
    run = debian_guest.boot_until_poweroff(
        overlay, share, work / "console.log", timeout=2400, boot_timeout=900
    )
    volumes = []

    def root_volume(raw: Path) -> int:
        """The root LV's offset, from the LVM2 metadata on partition 2."""
        volumes.append(lvm_layout.logical_volume(
            raw, 2, debian_image.VOLUME_GROUP, debian_image.ROOT_VOLUME))  # fmt: skip
        return volumes[-1].offset

    dumps = debian_guest.read_guest_tree(overlay, "/var/crash", work / "crash", root_volume)
    return Scenario(share, run, dumps, image, work, volumes[0])


def test_apt_installs_the_package_and_enable_arms_the_machine(scenario: Scenario) -> None:
    assert scenario.share.results().get(1) == 0, scenario.context()
    assert "Setting up kdump-build (" in scenario.out("apt-install.txt")
    assert scenario.out("which").strip() == "/usr/bin/kdump-build"
    owners = scenario.out("dpkg-owners.txt").splitlines()
    assert len(owners) == 4 and all(line.startswith("kdump-build: /") for line in owners)
    enable = scenario.out("enable.txt")
    assert "recipe: wrote /etc/kdump-build/recipe.toml for this machine" in enable, enable
    assert f"capture: /var/lib/kdump-build/{scenario.image.kernel_version} built" in enable
    assert "the kernel hooks of the kdump-build package, switched on" in enable, enable
    assert enable.strip().splitlines()[-1].startswith("reboot needed: crashkernel="), enable
    assert scenario.out("unit-enabled").strip() == "enabled"
    assert "crashkernel=" in scenario.out("grub-dropin.cfg")


def test_without_a_reservation_load_and_status_say_why(scenario: Scenario) -> None:
    value = scenario.out("grub-dropin.cfg").split("crashkernel=")[1].split('"')[0]
    load = scenario.out("load-boot1.txt")
    assert load.startswith(
        "kdump-build: error: no memory is reserved for a crash kernel: boot with "
        f"crashkernel={value} (kdump-build crashkernel --apply writes it for GRUB)"
    ), load
    assert "crash_notes" not in load and len(load.strip().splitlines()) == 1
    status = scenario.out("status-boot1.txt")
    assert scenario.out("status-boot1-rc").strip() == "4", "status: 4 when not ready"
    assert "crash kernel loaded: no" in status
    assert "reservation: none (no crashkernel= on this kernel's command line)" in status
    assert (
        f"not ready: no memory is reserved for a crash kernel: boot with crashkernel={value}"
        in (status)
    )


def test_the_unit_loaded_the_capture_at_boot_by_itself(scenario: Scenario) -> None:
    """Boot 2 never starts the unit: its journal shows the boot-time run that loaded."""
    applied = scenario.out("grub-dropin.cfg").split("crashkernel=")[1].split('"')[0]
    assert f"crashkernel={applied}" in scenario.out("cmdline").split(), scenario.context()
    journal = scenario.out("unit-journal.txt")
    # One start, by systemd at boot (the journal was read before the stop and start below).
    assert journal.count("Starting kdump-build") == 1, journal
    assert "Finished kdump-build" in journal, journal
    assert re.search(r"kdump-build\[\d+\]: loaded .*with kexec_(file_)?load", journal), journal
    assert scenario.out("crash-loaded").strip() == "1", scenario.context()
    assert scenario.out("unit-active").strip() == "active"
    unit = scenario.unit_times()
    assert unit["ExecMainStatus"] == 0
    assert 0 < unit["InactiveExitTimestampMonotonic"] < unit["ActiveEnterTimestampMonotonic"]
    status = scenario.out("status.txt")
    assert "crash kernel loaded: yes" in status, status
    assert "fits (" in status and "(current)" in status, status


def test_stop_unloads_and_start_loads_again(scenario: Scenario) -> None:
    assert scenario.out("crash-loaded-after-stop").strip() == "0", scenario.context()
    assert scenario.out("crash-loaded-after-start").strip() == "1", scenario.context()


def journal_since(journal: str, seconds: float) -> list[str]:
    """The lines of a `journalctl -o short-monotonic` journal logged after `seconds`."""
    stamped = (re.match(r"\[\s*(\d+\.\d+)\]", line) for line in journal.splitlines())
    return [match.string for match in stamped if match and float(match[1]) > seconds]


def test_a_cpu_offline_and_online_makes_the_udev_rule_reload_the_capture(
    scenario: Scenario,
) -> None:
    """Debian 12's 6.1 has no crash hotplug: the package's udev rule reloads the unit (the
    script only wrote cpu1's `online`; with the rule set aside, nothing reloaded), and the
    crash that follows still dumps."""
    assert scenario.out("cpus-online-while-offline").strip() == "0", scenario.context()
    journal = scenario.out("hotplug-journal.txt")
    control, mark = float(scenario.out("control-mark")), float(scenario.out("hotplug-mark"))
    # The control: cpu1 offline and online with the rule set aside reloaded nothing.
    assert journal_since(journal, control) == journal_since(journal, mark), journal
    since = journal_since(journal, mark)
    text = "\n".join(since)
    capture = f"/var/lib/kdump-build/{scenario.image.kernel_version}"
    reloads = [line for line in since if "systemd[1]: Reloading kdump-build" in line]
    print(f"reloads after cpu1 offline and online: {len(reloads)}")
    # Offline and online: systemd merges the second reload into the first, before it runs
    # (one run) or while it runs (run again after it; one job: one "Reloaded").
    assert 1 <= len(reloads) <= 2, text
    systemd = [line for line in since if "systemd[1]:" in line]
    assert "Reloaded kdump-build" in systemd[-1], text
    assert "fail" not in text.lower(), text
    assert text.count(f"kdump-build: reloading {capture}: a new ELF core header") == \
        len(reloads), text  # fmt: skip
    assert len(re.findall(r"kdump-build\[\d+\]: loaded .*with kexec_load", text)) == \
        len(reloads), text  # fmt: skip
    # A reload, never a restart: nothing unloaded, and no load killed.
    assert "Stopping kdump-build" not in text and "Starting kdump-build" not in text, text
    assert scenario.out("unit-active-after-hotplug").strip() == "active"
    assert scenario.out("crash-loaded-after-hotplug").strip() == "1"


def test_capture_saves_to_var_crash_and_the_host_reads_it(scenario: Scenario) -> None:
    vmcores = [path for path in scenario.dumps if path.name == "vmcore"]
    assert len(vmcores) == 1, (scenario.dumps, scenario.context())
    names = sorted(path.name for path in vmcores[0].parent.iterdir())
    assert names == ["collector.log", "kdump-target", "vmcore", "vmcore-dmesg.txt"]
    log = harness.dump_dmesg(vmcores[0], scenario.work / "host-dmesg.txt")
    assert "Kernel panic - not syncing: sysrq triggered crash" in log
    assert f"Linux version {scenario.image.kernel_version}" in log


def test_var_crash_is_on_the_root_volume_and_enable_found_it(scenario: Scenario) -> None:
    """The guest's /var/crash is on the root LV; the recipe enable wrote names that LV (as
    the host reads it from the image's LVM2 metadata) and its capture carries lvm2."""
    source = scenario.out("var-crash-source").strip()
    assert source == debian_image.ROOT_DEVICE, scenario.context()
    lsblk = scenario.out("lsblk.txt").split("\n")
    assert "debvm--vg-root lvm /" in lsblk and "vda1 part /boot" in lsblk, lsblk
    recipe = tomllib.loads(scenario.out("recipe.toml"))
    assert recipe["dump"]["lvm_volume"] == scenario.root_volume.uuid, recipe["dump"]
    members = {member["path"] for member in json.loads(scenario.out("capture-manifest.json"))
               ["members"]}  # fmt: skip
    assert any(path.endswith("/sbin/lvm") for path in members), sorted(members)
    assert any(path.endswith("/dm-mod.ko") for path in members), sorted(members)


def test_third_boot_lists_the_dump(scenario: Scenario) -> None:
    assert scenario.share.results().get(3) == 0, scenario.context()
    listed = json.loads(scenario.out("dumps.json"))
    assert len(listed) == 1, listed
    assert listed[0]["panic"] == "Kernel panic - not syncing: sysrq triggered crash"
    assert listed[0]["kernel_version"] == scenario.image.kernel_version
    assert listed[0]["complete"] and listed[0]["size"] > 1 << 20
    assert "sysrq triggered crash" in scenario.out("dumps.txt")


def test_kernel_package_install_and_removal_run_the_packages_hooks(scenario: Scenario) -> None:
    second = scenario.out("second-kernel").strip()
    assert second.endswith("-cloud-amd64"), scenario.context()
    assert second in scenario.out("after-install").split(), scenario.out("dpkg-install.txt")
    manifest = json.loads(scenario.out("second-manifest.json"))
    assert manifest["kernel"]["version"] == second
    assert second not in scenario.out("after-remove").split(), scenario.out("dpkg-remove.txt")
    assert scenario.image.kernel_version in scenario.out("after-remove").split()


def test_an_upgrade_rebuilds_the_capture_only_where_its_init_changed(
    scenario: Scenario,
) -> None:
    """Boot 3 only installs the newer .debs with apt: the package's postinst rebuilds."""
    version = scenario.image.kernel_version
    capture = f"/var/lib/kdump-build/{version}"
    assert scenario.out("upgraded-versions").split() == [
        "kdump-build", "0.1.0+upgrade1", "kdump-build", "0.1.0+upgrade2",
    ], scenario.context()  # fmt: skip
    changed, same = (scenario.out(f"upgrade-{name}.txt") for name, _ in UPGRADES)
    change = r"\(kdump-build changed \((\S+)\+init\.(\w+) -> (\S+)\+init\.(\w+)\)\)"
    built = re.search(rf"kdump-build: built {capture} for kernel {version} {change}", changed)
    assert built is not None, changed
    assert built[1] == built[3] and built[2] != built[4], built[0]  # the same Python version
    assert f"kdump-build: {capture} is up to date" in same, same
    assert "kdump-build: built" not in same, same
    before, after_changed, after_same = (line.split()[0] for line in
                                         scenario.out("initrd-sums").splitlines())  # fmt: skip
    assert before != after_changed == after_same
    # Upgrades leave the machine protected. Before debian/rules said --no-stop-on-upgrade,
    # debhelper's preinst stopped the unit (unloading the capture), the postinst's
    # try-restart found it inactive, and this read 0 until the next boot (the run of
    # 7 Dec 2026 08:45 UTC); the postinst now reloads the running unit instead.
    assert scenario.out("crash-loaded-after-upgrades").strip() == "1"


def test_apt_purge_removes_everything_of_ours_but_the_dumps(scenario: Scenario) -> None:
    assert "Purging configuration files for kdump-build" in scenario.out("apt-purge.txt")
    assert "is not installed" in scenario.out("dpkg-status-after-purge")
    before = set(scenario.out("files-before").splitlines())
    after = set(scenario.out("files-after").splitlines())
    dependencies = set(scenario.out("dependency-files").splitlines())
    gained = sorted(
        path for path in after - before
        if path not in dependencies and not path.startswith(KEPT_PREFIXES)
        and not compiled_dependency(path, dependencies)
    )  # fmt: skip
    assert gained == [], gained
    assert sorted(before - after) == []
    assert any(path.startswith("/var/crash/") and path.endswith("/vmcore") for path in after)


def test_timings_are_recorded(scenario: Scenario) -> None:
    timings = scenario.timings()
    (scenario.work / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(f"debian system timings: {timings}")
    initrd = json.loads(scenario.out("capture-manifest.json"))["initrd"]
    print(f"capture initrd on root-on-LVM: {initrd['size']} bytes ({initrd['compression']})")
    print(f"kdump-build crashkernel on root-on-LVM:\n{scenario.out('crashkernel.txt')}")
    assert 0 < timings["panic_to_saved"] < timings["panic_to_login"] < timings["whole_run"]
    assert timings["apt_install"] > 0 and timings["enable"] > 0
    assert timings["unit_start_to_loaded"] > 0
