"""A real Debian 12 system armed with `kdump-build enable`, crashed, and read back.

The system (tests.support.debian_image: built from Debian packages, cached) boots
through GRUB from its own disk, with systemd. One run of four QEMU processes:

  boot 1   install this checkout's wheel; `kdump-build enable` (timed); reboot
  boot 2   GRUB applied crashkernel=, the service loaded the capture: status; sysrq crash
  capture  saves /var/crash/<time>/ on the root filesystem and reboots
  boot 3   `kdump-build dumps`; a second kernel package (Debian's cloud flavour of the
           same ABI, fetched on the host) installed with dpkg, which runs our hook, then
           removed and purged; power off

The host then reads /var/crash from the disk image with debugfs and checks the
vmcore with makedumpfile --dump-dmesg, independently of the guest.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.image.fetch import fetch_packages
from tests.support import debian_guest, debian_image
from tests.vm import harness

pytestmark = pytest.mark.vm

SCRIPT = r"""
set -e
KB=/opt/kdump-build/venv/bin/kdump-build
out=$DEBVM_OUT
now() { cut -d' ' -f1 /proc/uptime; }
case "$DEBVM_BOOT" in
1)
    /opt/kdump-build/venv/bin/pip install -q --no-index --no-deps /run/debvm/wheel/*.whl
    start=$(now)
    $KB enable > $out/enable.txt 2>&1 || { cat $out/enable.txt; exit 1; }
    echo "$start $(now)" > $out/enable-times
    # This boot has no reservation yet: the unit skips, load and status say so.
    systemctl start kdump-build.service
    systemctl is-active kdump-build.service > $out/unit-boot1 || true
    journalctl -b -u kdump-build.service --no-pager > $out/unit-boot1-journal.txt || true
    $KB load /var/lib/kdump-build/$(uname -r) > $out/load-boot1.txt 2>&1 || true
    $KB status > $out/status-boot1.txt || echo $? > $out/status-boot1-rc
    cp /etc/default/grub.d/kdump-build.cfg $out/grub-dropin.cfg
    $KB crashkernel --show > $out/crashkernel-show.txt
    echo reboot > $out/next
    ;;
2)
    cat /proc/cmdline > $out/cmdline
    # The unit started during boot; this waits for it if it is still running.
    systemctl start kdump-build.service
    systemctl is-active kdump-build.service > $out/unit-active || true
    journalctl -b -u kdump-build.service --no-pager > $out/unit-journal.txt || true
    $KB status > $out/status.txt
    cat /sys/kernel/kexec_crash_loaded > $out/crash-loaded
    sync
    echo 1 > /proc/sys/kernel/sysrq
    echo c > /proc/sysrq-trigger
    ;;
3)
    $KB dumps > $out/dumps.txt
    $KB dumps --json > $out/dumps.json
    # The kernel package's own initrd is not what this test checks (our capture
    # brings its own); skipping update-initramfs saves ~95 s of TCG time.
    dpkg-divert --local --rename --add /usr/sbin/update-initramfs
    ln -s /bin/true /usr/sbin/update-initramfs
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
    ;;
esac
"""


@dataclass(frozen=True)
class Scenario:
    share: debian_guest.Share
    run: debian_guest.Run
    dumps: list[Path]
    image: debian_image.Image
    work: Path

    def out(self, name: str) -> str:
        path = self.share.path / "out" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def timings(self) -> dict[str, float]:
        """Seconds: enable (guest clock), panic to saved and panic to the third boot's
        script (the autologin console is up by then), from the console marks."""
        start, end = (float(value) for value in self.out("enable-times").split())
        crashed, third = self.run.marks[1], self.run.marks[2]
        return {
            "enable": round(end - start, 1),
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


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    work = tmp_path_factory.mktemp("debian-system")
    image = debian_image.build_image()
    share = debian_guest.Share.create(work / "share", SCRIPT)
    debian_guest.build_repo_wheel(share.path / "wheel", debian_image.downloads() / "wheels")
    second_kernel_deb(image.kernel_version, share.path / "debs")
    overlay = debian_guest.make_overlay(image.base, work / "overlay.qcow2")
    run = debian_guest.boot_until_poweroff(overlay, share, work / "console.log", timeout=1200)
    dumps = debian_guest.read_guest_tree(overlay, "/var/crash", work / "crash")
    return Scenario(share, run, dumps, image, work)


def test_enable_arms_the_machine(scenario: Scenario) -> None:
    assert scenario.share.results().get(1) == 0, scenario.context()
    enable = scenario.out("enable.txt")
    assert "recipe: wrote /etc/kdump-build/recipe.toml for this machine" in enable, enable
    assert f"capture: /var/lib/kdump-build/{scenario.image.kernel_version} built" in enable
    assert enable.strip().splitlines()[-1].startswith("reboot needed: crashkernel="), enable
    assert "crashkernel=" in scenario.out("grub-dropin.cfg")


def test_without_a_reservation_the_service_skips_and_load_says_why(scenario: Scenario) -> None:
    value = scenario.out("grub-dropin.cfg").split("crashkernel=")[1].split('"')[0]
    assert scenario.out("unit-boot1").strip() == "inactive", scenario.context()
    assert "kdump-build: this kernel has no crash reservation" in scenario.out(
        "unit-boot1-journal.txt"
    )
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


def test_second_boot_has_the_reservation_and_the_loaded_capture(scenario: Scenario) -> None:
    applied = scenario.out("grub-dropin.cfg").split("crashkernel=")[1].split('"')[0]
    assert f"crashkernel={applied}" in scenario.out("cmdline").split(), scenario.context()
    assert scenario.out("crash-loaded").strip() == "1", scenario.context()
    assert scenario.out("unit-active").strip() == "active"
    status = scenario.out("status.txt")
    assert "crash kernel loaded: yes" in status, status
    assert "fits (" in status and "(current)" in status, status


def test_capture_saves_to_var_crash_and_the_host_reads_it(scenario: Scenario) -> None:
    vmcores = [path for path in scenario.dumps if path.name == "vmcore"]
    assert len(vmcores) == 1, (scenario.dumps, scenario.context())
    names = sorted(path.name for path in vmcores[0].parent.iterdir())
    assert names == ["collector.log", "kdump-target", "vmcore", "vmcore-dmesg.txt"]
    log = harness.dump_dmesg(vmcores[0], scenario.work / "host-dmesg.txt")
    assert "Kernel panic - not syncing: sysrq triggered crash" in log
    assert f"Linux version {scenario.image.kernel_version}" in log


def test_third_boot_lists_the_dump(scenario: Scenario) -> None:
    assert scenario.share.results().get(3) == 0, scenario.context()
    listed = json.loads(scenario.out("dumps.json"))
    assert len(listed) == 1, listed
    assert listed[0]["panic"] == "Kernel panic - not syncing: sysrq triggered crash"
    assert listed[0]["kernel_version"] == scenario.image.kernel_version
    assert listed[0]["complete"] and listed[0]["size"] > 1 << 20
    assert "sysrq triggered crash" in scenario.out("dumps.txt")


def test_kernel_package_install_and_removal_run_the_hooks(scenario: Scenario) -> None:
    second = scenario.out("second-kernel").strip()
    assert second.endswith("-cloud-amd64"), scenario.context()
    assert second in scenario.out("after-install").split(), scenario.out("dpkg-install.txt")
    manifest = json.loads(scenario.out("second-manifest.json"))
    assert manifest["kernel"]["version"] == second
    assert second not in scenario.out("after-remove").split(), scenario.out("dpkg-remove.txt")
    assert scenario.image.kernel_version in scenario.out("after-remove").split()


def test_timings_are_recorded(scenario: Scenario) -> None:
    timings = scenario.timings()
    (scenario.work / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(f"debian system timings: {timings}")
    assert 0 < timings["panic_to_saved"] < timings["panic_to_login"] < timings["whole_run"]
    assert timings["enable"] > 0
