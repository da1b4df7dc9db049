"""Faults in the capture, on real parts: servers that never answer, a collector killed
mid-dump, a panic of the capture kernel.

Each test is one crash cycle (kexec-tools loads the capture side, as in
test_dump_targets.py). The server that never answers listens on the host's
127.0.0.1 (10.0.2.2 to the guest), accepts the connection and then says
nothing, ever: nothing refuses or closes, so only the capture's own bound ends
the wait. (A refused connection fails at once with or without a bound; QEMU's
`restrict=on` network answers with a reset, and addresses outside are
answered by this machine's proxy, so neither makes a black hole.)
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.qemu import USER_NETWORK, Boot
from tests.vm import harness
from tests.vm.test_dump_targets import (
    HOST_FROM_GUEST,
    SSH_PACKAGES,
    Capture,
    build_capture,
    write_recipe,
)

pytestmark = pytest.mark.vm

CONNECT_TIMEOUT = 10
NETWORK_UP = "kdump: network: eth0 is"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never sends or closes them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for connection in [*held, listener]:
            connection.close()


@dataclass
class Timeline:
    """A stop condition that never stops: it notes when each marker first shows."""

    markers: tuple[str, ...]
    seen: dict[str, float] = field(default_factory=dict)

    def __call__(self, console: str, idle: float) -> str | None:
        for marker in self.markers:
            if marker not in self.seen and marker in console:
                self.seen[marker] = time.monotonic()
        return None

    def between(self, first: str, second: str) -> float:
        return self.seen[second] - self.seen[first]


def crash(tmp_path: Path, capture: Capture, disk: Path | None, extra: tuple[str, ...],
          timeline: Timeline, timeout: float = 400) -> Boot:  # fmt: skip
    """Boot the main kernel, load the capture side with kexec -p, crash it."""
    boot = harness.run_qemu(
        capture.directory / "vmlinuz", capture.main_initrd, "console=ttyS0 crashkernel=192M",
        disk, memory="1G", log=tmp_path / "console.log", timeout=timeout, stop=timeline,
        extra=extra,
    )  # fmt: skip
    timeline(boot.console, 0)  # what showed just before QEMU ended
    assert "main: kexec_crash_loaded=1" in boot.console, boot.console[-4000:]
    assert "sysrq: Trigger a crash" in boot.console, boot.console[-4000:]
    return boot


def _check_bounded_failure(boot: Boot, timeline: Timeline, reason: str) -> None:
    context = boot.console[-4000:]
    assert boot.returncode == 0, context  # failure_action poweroff ended QEMU itself
    assert f"kdump: FAILED: {reason}" in boot.console, context
    assert "kdump: action: poweroff" in boot.console, context
    assert "kdump: dump saved" not in boot.console, context
    waited = timeline.between(NETWORK_UP, "kdump: action: poweroff")
    # The bound made the decision (not a refusal), and nothing waited past it. The
    # console is read about once a second: a second or two either way.
    assert CONNECT_TIMEOUT - 2 <= waited <= CONNECT_TIMEOUT + 5, waited


def test_nfs_server_that_never_answers_takes_failure_action_within_the_bound(
    tmp_path: Path, silent_server: int
) -> None:
    recipe = write_recipe(
        tmp_path,
        f'target = "nfs"\nnfs = "{HOST_FROM_GUEST}:/kdump"\nnfs_version = "4.2"\n'
        f'nfs_options = ["port={silent_server}"]\n'
        f'network = "dhcp"\nconnect_timeout = {CONNECT_TIMEOUT}\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n',
        extra_modules=("virtio_net",),
    )
    timeline = Timeline((NETWORK_UP, "kdump: action: poweroff"))
    # Without the bound the capture would wait for good: give up long before that.
    boot = crash(tmp_path, build_capture(tmp_path, recipe), None, USER_NETWORK, timeline, 150)
    _check_bounded_failure(
        boot, timeline, f"cannot mount {HOST_FROM_GUEST}:/kdump (vers=4.2,addr={HOST_FROM_GUEST}"
    )
    assert f"within {CONNECT_TIMEOUT}s" in boot.console


def test_ssh_server_that_never_answers_takes_failure_action_within_the_bound(
    tmp_path: Path, silent_server: int
) -> None:
    key = tmp_path / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # The server never shows a key: any known key will do (a build without one is refused).
    public = (tmp_path / "client_key.pub").read_text().split()
    (tmp_path / "known_hosts").write_text(f"{HOST_FROM_GUEST} {public[0]} {public[1]}\n")
    recipe = write_recipe(
        tmp_path,
        f'target = "ssh"\nssh = "root@{HOST_FROM_GUEST}"\nssh_port = {silent_server}\n'
        'ssh_key = "client_key"\nssh_known_hosts = "known_hosts"\n'
        f'path = "/srv/dumps"\nnetwork = "dhcp"\nconnect_timeout = {CONNECT_TIMEOUT}\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n',
        extra_modules=("virtio_net",),
        extra_packages=tuple(SSH_PACKAGES),
    )
    timeline = Timeline((NETWORK_UP, "kdump: action: poweroff"))
    # Without the bound the capture would wait for good: give up long before that.
    boot = crash(tmp_path, build_capture(tmp_path, recipe), None, USER_NETWORK, timeline, 150)
    _check_bounded_failure(boot, timeline, "cannot create /srv/dumps/")
    assert f"on root@{HOST_FROM_GUEST} within {CONNECT_TIMEOUT}s" in boot.console


# Pre hook: SIGKILL the collector once the dump file has some bytes in it.
KILL_COLLECTOR = r"""
(
    while :; do
        for cmdline in /proc/[0-9]*/cmdline; do
            case "$(tr '\0' ' ' < "$cmdline" 2>/dev/null)" in
                *makedumpfile*vmcore-incomplete*)
                    pid=${cmdline#/proc/}
                    pid=${pid%/cmdline}
                    until [ "$(find /mnt/dump -name vmcore-incomplete -size +8k)" ]; do
                        usleep 20000
                    done
                    echo "hook: killing makedumpfile $pid mid-dump"
                    kill -9 "$pid"
                    exit 0
                    ;;
            esac
        done
        usleep 20000
    done
) &
"""
# Post hook: what is on the disk now, then a panic of the capture kernel itself.
PANIC = r"""
sync
echo "hook: post status=$KDUMP_STATUS, in the dump directory: $(ls "$KDUMP_DUMP_DIR")"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
"""


def test_collector_killed_mid_dump_then_a_capture_kernel_panic(tmp_path: Path) -> None:
    """The partial dump keeps its -incomplete name; the panic resets the machine (panic=10)."""
    (tmp_path / "kill.sh").write_text(KILL_COLLECTOR)
    (tmp_path / "panic.sh").write_text(PANIC)
    recipe = write_recipe(
        tmp_path,
        'target = "local"\ndevice = "LABEL=kdump"\npre = ["kill.sh"]\npost = ["panic.sh"]\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n',
    )
    disk = tmp_path / "dump.img"
    harness.make_dump_disk(disk)
    timeline = Timeline(("kdump: FAILED", "Rebooting in 10 seconds"))
    boot = crash(tmp_path, build_capture(tmp_path, recipe), disk, (), timeline)
    context = boot.console[-4000:]
    capture_side = boot.console.split("sysrq: Trigger a crash", 1)[1]
    assert "hook: killing makedumpfile" in capture_side, context
    assert "kdump: FAILED: saving the dump failed;" in capture_side, context
    assert "vmcore-incomplete is partial" in capture_side, context
    # ls prints one name per line: the target record, the kernel log, the partial dump.
    assert "hook: post status=failed, in the dump directory: " in capture_side, context
    listing = capture_side.split("hook: post status=failed, in the dump directory: ", 1)[1]
    listed = listing.split("sysrq: Trigger a crash", 1)[0].split()
    assert {"kdump-target", "vmcore-dmesg.txt", "vmcore-incomplete"} <= set(listed), listed
    # The capture kernel's own panic: it resets the machine (QEMU ends by itself
    # because of -no-reboot) instead of hanging, and no failure action runs.
    assert "Kernel panic - not syncing: sysrq triggered crash" in capture_side, context
    assert "Rebooting in 10 seconds" in capture_side, context
    assert boot.returncode == 0 and not boot.stopped, context
    assert "kdump: action:" not in capture_side, context
    files = harness.extract_disk(disk, tmp_path / "disk")
    names = sorted(path.name for path in files)
    assert "vmcore" not in names and "vmcore-incomplete" in names, names
    (partial,) = [path for path in files if path.name == "vmcore-incomplete"]
    assert partial.stat().st_size > 8192
