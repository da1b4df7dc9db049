"""Run a test script in the Debian system of tests.support.debian_image, boot after boot.

Each boot is a fresh QEMU process on the same qcow2 overlay (-no-reboot: a guest
reboot, or the capture kernel's `reboot -f`, ends QEMU and the next boot
starts cold). Under TCG a reset inside one QEMU makes GRUB's BIOS disk reads
2-50x slower; a cold start does not.

The host talks to the guest through a 9p share: `boot.sh` (the policy, below)
runs the test's `run.sh` at every boot with DEBVM_BOOT=N, logs to
out/boot-N.log and out/rc-N, then does what out/next says (poweroff by
default, or reboot). Files the guest wrote to its own disk are read back
with debugfs, without mounting anything.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import qemu
from tests.support.debian_image import PART_START, SECTOR, SHARE_TAG
from tests.support.paths import REPO

BOOT_SH = """\
n=$(( $(cat /run/debvm/out/boots 2>/dev/null || echo 0) + 1 ))
mkdir -p /run/debvm/out
echo "$n" > /run/debvm/out/boots
rm -f /run/debvm/out/next
echo "debvm: script start boot=$n"
DEBVM_BOOT=$n DEBVM_OUT=/run/debvm/out sh -x /run/debvm/run.sh > /run/debvm/out/boot-$n.log 2>&1
rc=$?
echo "$rc" > /run/debvm/out/rc-$n
sed 's/^/debvm| /' /run/debvm/out/boot-$n.log
echo "debvm: script exit $rc boot=$n"
next=$(cat /run/debvm/out/next 2>/dev/null || echo poweroff)
echo "$next" > /run/debvm/out/action-$n
sync
case "$next" in
    reboot) systemctl --no-block reboot ;;
    *) systemctl --no-block poweroff ;;
esac
"""

# Console lines whose times a test reports, per boot.
MARKS = {
    "kernel": re.compile(r"Linux version \d"),
    "multi-user": re.compile(r"Reached target .*multi-user\.target"),
    "script": re.compile(r"debvm: script start"),
    "panic": re.compile(r"Kernel panic - not syncing"),
    "saved": re.compile(r"kdump: dump saved"),
}


@dataclass(frozen=True)
class Share:
    """The per-run 9p directory: boot.sh, the test's run.sh, and out/ for results."""

    path: Path

    @classmethod
    def create(cls, path: Path, script: str) -> Share:
        if path.exists():
            shutil.rmtree(path)
        (path / "out").mkdir(parents=True)
        (path / "boot.sh").write_text(BOOT_SH)
        (path / "run.sh").write_text(script)
        return cls(path)

    def results(self) -> dict[int, int]:
        """run.sh's exit status for every boot that finished it."""
        found = {}
        for status in (self.path / "out").glob("rc-*"):
            found[int(status.name[3:])] = int(status.read_text().strip() or -1)
        return found

    def boots(self) -> int:
        counter = self.path / "out/boots"
        return int(counter.read_text()) if counter.exists() else 0

    def action(self, boot: int) -> str:
        chosen = self.path / f"out/action-{boot}"
        return chosen.read_text().strip() if chosen.exists() else ""

    def log(self, boot: int) -> str:
        path = self.path / f"out/boot-{boot}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Run:
    """Every QEMU process of a run: consoles, and the marks' times since the run started."""

    consoles: list[str] = field(default_factory=list)
    marks: list[dict[str, float]] = field(default_factory=list)
    stopped: str = ""
    seconds: float = 0.0

    @property
    def console(self) -> str:
        return "\n".join(f"# ---- QEMU run {index + 1}\n{text}"
                         for index, text in enumerate(self.consoles))  # fmt: skip


def boot_until_poweroff(
    disk: Path,
    share: Share,
    log: Path,
    *,
    fmt: str = "qcow2",
    timeout: float = 900,
    boot_timeout: float = 300,
    max_boots: int = 6,
) -> Run:
    """Boot again and again until a boot's script ends in poweroff.

    A boot whose script never finished (it crashed and the capture kernel
    rebooted) boots again. Every boot is capped: a panic without a loaded
    capture kernel hangs for ever.
    """
    run = Run()
    start = time.monotonic()
    for index in range(max_boots):
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            run.stopped = f"timeout after {timeout:.0f} s"
            break
        part = log.with_name(f"{log.stem}.{index + 1}{log.suffix}")
        part.unlink(missing_ok=True)
        marks = qemu.Marks(MARKS, start)
        command = qemu.disk_qemu_command(
            disk, fmt, memory="2G", cpus=2, log=part, share=(share.path, SHARE_TAG)
        )
        boot = qemu.watch(command, part, timeout=min(remaining, boot_timeout), stop=marks)
        marks(boot.console, 0)
        run.consoles.append(boot.console)
        run.marks.append(marks.seen)
        if boot.returncode is None:
            run.stopped = f"boot {index + 1}: {boot.stopped}"
            break
        if share.action(share.boots()) == "poweroff":
            break
    run.seconds = round(time.monotonic() - start, 1)
    log.write_text(run.console)
    return run


def make_overlay(base: Path, overlay: Path) -> Path:
    """A qcow2 overlay on the cached base image, which is never written."""
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)],
        check=True,
    )
    return overlay


def first_partition(raw: Path) -> int:
    """Where make_disk puts the root filesystem: partition 1 (byte offset)."""
    return PART_START * SECTOR


def read_guest_tree(
    overlay: Path, guest_path: str, destination: Path,
    locate: Callable[[Path], int] = first_partition,
) -> list[Path]:  # fmt: skip
    """Copy a directory out of the guest's root filesystem (qcow2 to raw, debugfs rdump);
    `locate` finds that filesystem's byte offset in the raw disk."""
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debvm-read-") as temporary:
        raw = Path(temporary) / "disk.raw"
        subprocess.run(["qemu-img", "convert", "-q", "-O", "raw", str(overlay), str(raw)],
                       check=True)  # fmt: skip
        subprocess.run(
            ["debugfs", "-R", f"rdump {guest_path} {destination}", f"{raw}?offset={locate(raw)}"],
            check=True, capture_output=True,
        )  # fmt: skip
    return sorted(path for path in destination.rglob("*") if path.is_file())


def build_repo_wheel(destination: Path, wheels: Path) -> Path:
    """A wheel of the working tree as it is now, uncommitted edits included.

    Built from a copy without .git, .venv, tests and bench, with setuptools from
    `wheels` (no network), so the guest installs exactly what a user would.
    """
    with tempfile.TemporaryDirectory(prefix="kdump-build-src-") as temporary:
        source = Path(temporary) / "src"
        ignored = (".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache",
                   ".hypothesis", "tests", "bench")  # fmt: skip
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*ignored))
        destination.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
             "--find-links", str(wheels), "-w", str(destination), str(source)],
            check=True, capture_output=True,
        )  # fmt: skip
    return next(destination.glob("kdump_build-*.whl"))
