"""The kernels people run next, dumped with our own loader: Debian 14 and trixie-backports.

Each test builds a capture from the Debian 13 recipe with one key changed,
boots that kernel as the main one (its own 9p modules, the host's venv over
9p), loads with `kdump-build load` (our layout and purgatory, no
kexec-tools), crashes it and reads the vmcore back with the host's
makedumpfile. One boot per kernel.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest

from builder.crashkernel_syntax import parse_size
from tests.conftest import run_cli
from tests.support import recipes
from tests.support.paths import REPO
from tests.vm import harness

pytestmark = pytest.mark.vm

TRIXIE_RECIPE = REPO / "recipes" / "qemu-x86_64-trixie.toml"

# The main side: our load, the state files of 6.19+ (and where the old names
# point), status and kdump-load --status, the crash.
BODY = """
mount -t tmpfs tmpfs /host/run
if in_host "{python} -m builder.cli load {outdir} --method segments --verbose"; then
    echo "main: load finished"
else
    echo "main: load failed"
    poweroff -f
fi
echo "main: kexec/crash_loaded=$(cat /sys/kernel/kexec/crash_loaded)"
echo "main: kexec/ holds: $(cd /sys/kernel/kexec && echo *)"
echo "main: kexec_crash_loaded links to $(readlink /sys/kernel/kexec_crash_loaded)"
echo "main: kexec/crash_cma_ranges=[$(cat /sys/kernel/kexec/crash_cma_ranges | tr '\\n' ' ')]"
echo "main: crash_size=$(cat /sys/kernel/kexec/crash_size)"
grep -E '^(MemTotal|CmaTotal):' /proc/meminfo | sed 's/^/main: /'
dmesg | grep -i 'crashkernel' | sed 's/^/main: dmesg: /'

in_host "{python} -m builder.cli status"
in_host "builder/kexec/loader/kdump-load-x86_64 --status" | sed 's/^/main: kdump-load: /'
# Two CPUs: the serial interrupt may belong to the other CPU, and what the tty has not
# sent when this one panics is lost. A second lets it drain the lines asserted on.
sleep 1
echo c > /proc/sysrq-trigger
echo "main: still alive after sysrq crash"
"""


def _build(tmp: Path, changes: dict[str, dict[str, object]]) -> tuple[Path, dict[str, object]]:
    recipe = tmp / "recipe.toml"
    recipe.write_text(recipes.recipe_text(changes, base=TRIXIE_RECIPE))
    outdir = tmp / "out"
    result = run_cli(str(recipe), "-o", str(outdir), "--json")
    assert result.returncode == 0, result.stderr
    summary: dict[str, object] = json.loads(result.stdout)
    return outdir, summary


def _crash(
    outdir: Path, kernel: str, release: str, tmp: Path, crashkernel: str = "crashkernel=192M"
) -> tuple[str, list[Path]]:
    body = BODY.format(python=shlex.quote(sys.executable), outdir=shlex.quote(str(outdir)))
    init = harness.HOSTROOT_INIT.format(tag=harness.HOSTROOT_TAG, repo=REPO, body=body)
    initrd = tmp / "main-initrd.img"
    # base-files: the /lib -> usr/lib link the merged-/usr packages' modules go through.
    initrd.write_bytes(
        harness.ninep_initrd(kernel, init, ("busybox-static", "base-files"), release=release)
    )
    disk = tmp / "dump.img"
    harness.make_dump_disk(disk)
    boot = harness.run_qemu(
        outdir / "vmlinuz",
        initrd,
        f"console=ttyS0 {crashkernel} no_timer_check",
        disk,
        memory="1G",
        cpus=2,
        log=tmp / "console.log",
        share_host_root=True,
        timeout=900,
    )
    assert boot.returncode == 0, f"QEMU did not power off cleanly:\n{boot.console[-4000:]}"
    files = harness.extract_disk(disk, tmp / "disk")
    return boot.console, files


def _check_dump(console: str, files: list[Path], kernel: str, tmp: Path, cma: bool = False) -> None:
    context = console[-5000:]
    assert "main: load finished" in console, context
    # 6.19+ keeps the state in /sys/kernel/kexec/ (the four files builder/kexecfs.py reads
    # first), the flat names link there; status and the C loader read it.
    assert "main: kexec/crash_loaded=1" in console, context
    (held,) = [line for line in console.splitlines() if line.startswith("main: kexec/ holds:")]
    assert {"loaded", "crash_loaded", "crash_size", "crash_cma_ranges"} <= set(held.split()), held
    assert "kexec/crash_loaded" in console.split("main: kexec_crash_loaded links to ")[1]
    (ranges,) = [line for line in console.splitlines() if "main: kexec/crash_cma_ranges=" in line]
    # With ,cma the kernel reports its ranges, and our loader gave them to the capture.
    assert (ranges.split("=[")[1].strip(" ]\r") != "") == cma, ranges
    assert "crash kernel loaded: yes" in console, context
    assert "main: kdump-load: crash kernel loaded\n" in console.replace("\r", ""), context
    assert "kdump: dump saved to" in console, context
    (vmcore,) = [path for path in files if path.name == "vmcore"]
    # makedumpfile older than the kernel (Debian 14's 1.7.8 on 7.2 and 7.3): its warning is kept.
    said = (vmcore.parent / "collector.log").read_text()
    assert "The kernel version is not supported." in said, said
    log = harness.dump_dmesg(vmcore, tmp / "dmesg.txt")
    assert "sysrq triggered crash" in log
    assert f"Linux version {kernel}" in log


def test_debian14_dumps_with_the_debian13_recipe_but_release(tmp_path: Path) -> None:
    """Only `source.release` differs; the kernel comes from /usr/lib/modules/VER."""
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    outdir, summary = _build(tmp_path, {"source": {"release": "forky"}})
    kernel = str(summary["kernel"])
    assert kernel.startswith("7.") and kernel.endswith("+deb14-amd64"), kernel
    # The reservation the project recommends for this 1 GiB guest, split into a fixed
    # part and a ,cma part (7.x x86_64 supports it).
    fitted = run_cli("fit", str(tmp_path / "recipe.toml"), "--ram", "1G", "--json")
    report = json.loads(fitted.stdout)
    split = str(report["recommended_cma"])
    fixed, cma = split.split()
    assert cma.endswith(",cma"), split
    crashkernel = f"crashkernel={fixed} crashkernel={cma}"
    console, files = _crash(outdir, kernel, "forky", tmp_path, crashkernel)
    print(f"recommended {report['recommended']}, split {crashkernel}")
    _check_dump(console, files, kernel, tmp_path, cma=True)
    # The main system lost only the fixed part; the loader put the CMA range in the
    # capture's e820 map (its console prints the map it booted with).
    assert f"main: crash_size={parse_size(fixed)}" in console, console[-5000:]
    (line,) = [line for line in console.splitlines() if "main: kexec/crash_cma_ranges=" in line]
    ranges = [[int(x, 16) for x in r.split("-")] for r in line.split("=[")[1].strip(" ]\r").split()]
    capture = console.split("sysrq triggered crash")[1]
    # 7.x prints RAM as "System RAM" (older kernels: "usable").
    e820_ram = r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\]\s+(?:usable|System RAM)"
    usable = [[int(x, 16) for x in m] for m in re.findall(e820_ram, capture)]
    for first, last in ranges:
        assert any(lo <= first and last <= hi for lo, hi in usable), (ranges, usable)


def test_debian13_dumps_on_the_trixie_backports_kernel(tmp_path: Path) -> None:
    """The Debian 13 recipe with its kernel picked from trixie-backports (7.x, split layout)."""
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    packages = tomllib.loads(TRIXIE_RECIPE.read_text())["source"]["packages"]
    assert packages[0] == "linux-image-amd64"
    picked = ["linux-image-amd64/trixie-backports", *packages[1:]]
    outdir, summary = _build(tmp_path, {"source": {"packages": picked}})
    kernel = str(summary["kernel"])
    assert kernel.startswith("7.") and kernel.endswith("+deb13-amd64"), kernel
    manifest = json.loads((outdir / "manifest.json").read_text())
    versions = {package["name"]: package["version"] for package in manifest["packages"]}
    assert versions[f"linux-binary-{kernel}"].endswith("~bpo13+1"), versions
    assert not versions["makedumpfile"].endswith("~bpo13+1")  # only the kernel was picked
    # The main side's modules: the backports suite has the kernel package.
    console, files = _crash(outdir, kernel, "trixie-backports", tmp_path)
    _check_dump(console, files, kernel, tmp_path)
