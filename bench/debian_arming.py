"""Arming a Debian 12 machine: kdump-build's .deb against Debian's kdump-tools, one run.

    flock /work/notes/vm.lock .venv/bin/python -m bench.debian_arming [--write]

Two qcow2 overlays of the same cached Debian 12 system image
(tests/support/debian_image.py), booted one after the other through GRUB, three
boots each (tests.support.debian_guest runs a script at every boot):

  kdump-build  boot 1: `apt-get install` of this checkout's .deb (scripts/build-deb) and
               its Debian dependencies from the share, offline, then `kdump-build enable`,
               both timed on the guest clock (tests.support.debian_package, the same
               shell tests/vm/test_debian_system.py times); reboot.
  kdump-tools  boot 1: debconf preseeded the way the package asks (kdump-tools/use_kdump
               true, kexec-tools/load_kexec false), then `apt-get install` of Debian's
               kdump-tools and the packages it needs that the image lacks, offline, timed.
               The package's postinst writes its GRUB drop-in and runs update-grub; its
               initrd (initramfs-tools) is built by its unit at the first load. Nothing is
               done by hand; update-initramfs is not diverted here; reboot.
  both         boots 2 and 3: the unit ran at boot by itself; `systemctl show`'s
               timestamps, its journal, /proc/cmdline and /sys/kernel/kexec_crash_loaded.

It prints the table (bench/debian_arming_table.py) with kdump-tools' time over
kdump-build's. With --write it stores every file the guests wrote in
bench/evidence/debian-arming.json, the consoles xz-compressed in
bench/evidence/debian-arming/, and the section made from the store in
docs/performance.md (tests/unit/test_debian_arming.py checks they agree).
Not a test: a unit that does not load is a result, shown in the table.
"""

from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import machine, scratch
from bench.debian_arming_table import HEADING, Tool, figures, not_loaded, report, section
from bench.loader_cost_table import replace_section
from tests.support import debian_guest, debian_image
from tests.support.debian_package import INSTALL_SH, copy_debs, package_debs
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "evidence" / "debian-arming.json"
CONSOLES = REPO / "bench" / "evidence" / "debian-arming"
DOC = REPO / "docs" / "performance.md"
COMMAND = "flock /work/notes/vm.lock .venv/bin/python -m bench.debian_arming --write"
# Debian 12's kdump-tools and what it depends on that the image lacks (kexec-tools,
# makedumpfile, ucf, linux-base, busybox-static and initramfs-tools are in it already;
# the fetch answers lsb-base with sysvinit-utils, which provides it and is in it too).
# The fetch adds the libraries these depend on; apt leaves those at the image's version.
KDUMP_TOOLS = ("kdump-tools", "bsdextrautils", "file", "libmagic1", "libmagic-mgc", "lsb-base")

# This boot's record of unit $1, in $out/measure-$DEBVM_BOOT/.
MEASURE_SH = r"""
measure() {
    d=$out/measure-$DEBVM_BOOT
    mkdir -p $d
    cat /proc/cmdline > $d/cmdline
    systemctl is-active "$1" > $d/active || true
    systemctl show -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic \
        -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic \
        -p ExecMainStatus "$1" > $d/unit-times
    journalctl -b -u "$1" -o short-monotonic --no-pager > $d/journal.txt
    cat /sys/kernel/kexec_crash_loaded > $d/crash-loaded
    cat /sys/kernel/kexec_crash_size > $d/crash-size
}
"""

HEAD = (
    r"""
set -e
out=$DEBVM_OUT
export DEBIAN_FRONTEND=noninteractive
"""
    + INSTALL_SH
    + MEASURE_SH
)

KDUMP_BUILD_SCRIPT = (
    HEAD
    + r"""
case "$DEBVM_BOOT" in
1)
    install_and_enable
    cp /etc/default/grub.d/kdump-build.cfg $out/grub-dropin.cfg
    echo reboot > $out/next
    ;;
2)
    measure kdump-build.service
    ls -l /var/lib/kdump-build/$(uname -r)/ > $out/capture-files
    echo reboot > $out/next
    ;;
3)
    measure kdump-build.service
    ;;
esac
"""
)

KDUMP_TOOLS_SCRIPT = (
    HEAD
    + r"""
case "$DEBVM_BOOT" in
1)
    echo "kdump-tools kdump-tools/use_kdump boolean true" | debconf-set-selections
    echo "kexec-tools kexec-tools/load_kexec boolean false" | debconf-set-selections
    start=$(now)
    install_debs /run/debvm/kdump-tools/*.deb
    installed=$(now)
    echo "$start $installed $installed" > $out/install-times
    ls -l /var/lib/kdump/ > $out/kdump-dir-after-install
    cp /etc/default/grub.d/kdump-tools.cfg $out/grub-dropin.cfg
    grep -c crashkernel= /boot/grub/grub.cfg > $out/grub-cfg-crashkernel || true
    grep USE_KDUMP /etc/default/kdump-tools > $out/use-kdump
    echo reboot > $out/next
    ;;
2)
    measure kdump-tools.service
    ls -l /var/lib/kdump/ > $out/kdump-dir
    echo reboot > $out/next
    ;;
3)
    measure kdump-tools.service
    ;;
esac
"""
)

SCRIPTS = {Tool.KDUMP_BUILD: KDUMP_BUILD_SCRIPT, Tool.KDUMP_TOOLS: KDUMP_TOOLS_SCRIPT}


def _kdump_build_debs(share: Path) -> list[str]:
    return [package_debs(share).name]


def _kdump_tools_debs(share: Path) -> list[str]:
    return [path.name for path in copy_debs(KDUMP_TOOLS, share / "kdump-tools")]


# What each side's boot 1 installs, put in its share; the .debs' file names.
PACKAGES: dict[Tool, Callable[[Path], list[str]]] = {
    Tool.KDUMP_BUILD: _kdump_build_debs,
    Tool.KDUMP_TOOLS: _kdump_tools_debs,
}


def out_files(share: debian_guest.Share) -> dict[str, str]:
    """Every file the guest wrote to the share's out/, by its path there."""
    out = share.path / "out"
    return {str(path.relative_to(out)): path.read_text(errors="replace")
            for path in sorted(out.rglob("*")) if path.is_file()}  # fmt: skip


def boot_side(
    side: Tool, image: debian_image.Image, work: Path
) -> tuple[list[str], dict[str, Any], str]:
    """Three boots of one overlay: the .debs installed, what the guest wrote, the console."""
    share = debian_guest.Share.create(work / side / "share", SCRIPTS[side])
    names = PACKAGES[side](share.path)
    overlay = debian_guest.make_overlay(image.base, work / side / "overlay.qcow2")
    run = debian_guest.boot_until_poweroff(
        overlay, share, work / side / "console.log", timeout=2400, boot_timeout=900
    )
    overlay.unlink()
    if share.results() != {1: 0, 2: 0, 3: 0}:
        logs = "\n".join(share.log(boot) for boot in range(1, 4))
        sys.exit(f"{side}: the guest scripts ended {share.results()} ({run.stopped}):\n"
                 f"{logs[-3000:]}\n--- console\n{run.console[-3000:]}")  # fmt: skip
    return names, {"qemu_seconds": run.seconds, "out": out_files(share)}, run.console


def measure(work: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Both sides in this run; the evidence and the consoles."""
    started, before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine()
    image = debian_image.build_image()
    packages: dict[str, list[str]] = {}
    sides: dict[str, dict[str, Any]] = {}
    consoles: dict[str, str] = {}
    for side in Tool:
        packages[side], sides[side], consoles[side] = boot_side(side, image, work)
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True)
    evidence = {
        "command": COMMAND,
        "date": started,
        "machine": f"at the start: {before}; at the end: {machine()}",
        "image_key": debian_image.image_key(),
        "kernel_version": image.kernel_version,
        "qemu": qemu.stdout.splitlines()[0] if qemu.stdout else "unknown",
        "packages": packages,
        "sides": sides,
    }
    return evidence, consoles


def store(evidence: dict[str, Any], consoles: dict[str, str]) -> None:
    """The evidence, the consoles, and docs/performance.md's section made from them."""
    RESULTS.write_text(json.dumps(evidence, indent=1) + "\n")
    CONSOLES.mkdir(exist_ok=True)
    for side, console in consoles.items():
        (CONSOLES / f"{side}.console.log.xz").write_bytes(lzma.compress(console.encode()))
    DOC.write_text(replace_section(DOC.read_text(), section(evidence), HEADING))
    print(f"wrote {RESULTS.relative_to(REPO)}, {CONSOLES.relative_to(REPO)}/ and "
          f"{DOC.relative_to(REPO)}")  # fmt: skip


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"store in {RESULTS.name} and docs")
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it")
    args = parser.parse_args(argv)
    if args.keep and args.keep.exists():
        parser.error(f"--keep {args.keep}: already exists (it must be a new directory)")
    if args.keep:
        args.keep.mkdir(parents=True)
        evidence, consoles = measure(args.keep)
    else:
        with scratch("kdump-debian-arming.") as work:
            evidence, consoles = measure(work)
    print("\n".join(report(evidence)))
    unloaded = not_loaded(figures(evidence))
    if unloaded:
        print(f"NOT LOADED: {', '.join(unloaded)}")
    if args.write:
        store(evidence, consoles)


if __name__ == "__main__":
    main(sys.argv[1:])
