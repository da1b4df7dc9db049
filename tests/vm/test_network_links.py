"""Network links of a capture on real parts (issue 22, item 3), in one crash cycle:
NFS to an IPv6-only server, over an active-backup bond of two virtio NICs whose first
link is down.

Each NIC has its own QEMU user network with IPv4 off (`ipv4=off,ipv6=on`): QEMU
answers router solicitations with the prefix fd00::/64 and shows the host's ::1 to
the guest as fd00::2, where nfs-ganesha listens. The first NIC's link is set down over
QMP as soon as QEMU starts, so the bond can only carry the dump through the second.
The capture finds both ports by MAC address and takes its address by SLAAC.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.qmp import Qmp, qmp_option
from tests.vm import harness
from tests.vm.test_dump_targets import build_capture, check_vmcore, ganesha, write_recipe

pytestmark = pytest.mark.vm

HOST_FROM_GUEST6 = "fd00::2"
# Under TCG on a loaded machine the kernel's check of the IO-APIC timer can fail ("IO-APIC
# + timer doesn't work!", a panic: this test's first run, in the capture kernel);
# test_next_kernels skips it the same way.
NO_TIMER_CHECK = "no_timer_check"
PORTS = ("52:54:00:00:be:01", "52:54:00:00:be:02")
# A unique local prefix: Linux gives QEMU's default fec0::/64 (site-local) scope "site",
# and the capture waits for a global address.
NETWORK6 = f"ipv4=off,ipv6=on,ipv6-net=fd00::/64,ipv6-host={HOST_FROM_GUEST6}"


def _two_nics() -> tuple[str, ...]:
    options: list[str] = []
    for index, mac in enumerate(PORTS, start=1):
        options += ["-netdev", f"user,id=n{index},{NETWORK6}",
                    "-device", f"virtio-net-pci,netdev=n{index},mac={mac}"]  # fmt: skip
    return tuple(options)


class FirstLinkDown:
    """Stop condition that never stops: on its first chance it sets NIC n1's link down
    over QMP (retried until QEMU's socket answers), and records that it did."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.done = False
        self.reply = ""

    def __call__(self, console: str, idle: float) -> str | None:
        if not self.done:
            try:
                qmp = Qmp(self.socket_path)
            except OSError:
                return None
            # The monitor answers nothing on success, the reason otherwise.
            self.reply = qmp.human("set_link n1 off")
            self.done = self.reply.strip() == ""
            qmp.close()
        return None


def test_nfs_to_an_ipv6_only_server_over_a_bond_with_its_first_link_down(
    tmp_path: Path,
) -> None:
    with ganesha(tmp_path, "::1") as (export, port):
        recipe = write_recipe(
            tmp_path,
            f'target = "nfs"\nnfs = "[{HOST_FROM_GUEST6}]:/kdump"\nnfs_version = "4.2"\n'
            f'nfs_options = ["port={port}"]\npath = "/dumps"\nnetwork = "slaac"\n'
            f'interface = "bond0"\nbond = "active-backup"\nbond_ports = {json.dumps(list(PORTS))}\n'
            "device_timeout = 20\nconnect_timeout = 30\n"
            'final_action = "poweroff"\nfailure_action = "poweroff"\n',
            extra_modules=("virtio_net",),
            extra_cmdline=(NO_TIMER_CHECK,),
        )
        capture = build_capture(tmp_path, recipe)
        socket_path = tmp_path / "qmp.sock"
        link_down = FirstLinkDown(socket_path)
        boot = harness.run_qemu(
            capture.directory / "vmlinuz", capture.main_initrd,
            f"console=ttyS0 crashkernel=192M {NO_TIMER_CHECK}", None,
            memory="1G", log=tmp_path / "console.log",
            extra=(*qmp_option(socket_path), *_two_nics()), stop=link_down,
        )  # fmt: skip
    console = boot.console
    context = console[-5000:]
    assert link_down.done, link_down.reply
    assert boot.returncode == 0, context
    assert "sysrq: Trigger a crash" in console, context
    capture_log = harness.capture_console(console)
    # Both ports found by MAC (the capture kernel names them eth0, eth1) and bonded.
    assert "kdump: network: bond bond0 (active-backup) of eth0 eth1" in capture_log, context
    # The kernel's own word: the first port has no link, the second carries the bond.
    assert re.search(r"bond0: \(slave eth1\): making interface the new active one", capture_log)
    assert not re.search(r"bond0: \(slave eth0\): making interface the new active one",
                         capture_log), context  # fmt: skip
    found = re.search(r"kdump: network: bond0 is (fd00:[0-9a-f:]+)", capture_log)
    assert found, context
    dumps = list((export / "dumps").iterdir())
    assert len(dumps) == 1, dumps
    # The directory is named after the SLAAC address, its colons as dashes.
    assert dumps[0].name.startswith(found.group(1).replace(":", "-") + "-"), dumps
    assert (dumps[0] / "kdump-target").read_text() == f"nfs [{HOST_FROM_GUEST6}]:/kdump\n"
    check_vmcore(dumps[0] / "vmcore", capture.kernel_version, tmp_path)
