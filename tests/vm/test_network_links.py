"""Network links of a capture on real parts (issue 22, item 3), one crash cycle each:
NFS to an IPv6-only server, over an active-backup bond of two virtio NICs whose first
link is down, over an 802.3ad bond of two with no LACP partner, and over the host's
bridge of two whose first link is down; ssh over a VLAN, after an attempt on the wrong
VLAN.

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

from tests.support import qemu
from tests.support.qmp import Qmp, qmp_option
from tests.support.vlan_relay import UNTAGGED, VlanRelay
from tests.vm import harness
from tests.vm.test_dump_targets import (
    GUEST_ADDRESS,
    HOST_FROM_GUEST,
    SSH_PACKAGES,
    Capture,
    build_capture,
    check_vmcore,
    ganesha,
    restore_flat,
    ssh_server,
    write_recipe,
)

pytestmark = pytest.mark.vm
__all__ = ["ssh_server"]  # the fixture

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


def _nfs_over(link_keys: str, port: int) -> str:
    """The keys of an NFS target at the host's ::1 over the link `link_keys`, by SLAAC."""
    return (
        f'target = "nfs"\nnfs = "[{HOST_FROM_GUEST6}]:/kdump"\nnfs_version = "4.2"\n'
        f'nfs_options = ["port={port}"]\npath = "/dumps"\nnetwork = "slaac"\n{link_keys}'
        "device_timeout = 20\nconnect_timeout = 30\n"
        'final_action = "poweroff"\nfailure_action = "poweroff"\n'
    )


def _nfs_over_bond(mode: str, port: int) -> str:
    """The keys of an NFS target at the host's ::1 over bond0 of PORTS, by SLAAC."""
    bond = f'interface = "bond0"\nbond = "{mode}"\nbond_ports = {json.dumps(list(PORTS))}\n'
    return _nfs_over(bond, port)


def _check_nfs_dump(export: Path, capture_log: str, kernel_version: str,
                    scratch: Path, link: str = "bond0") -> str:  # fmt: skip
    """One dump in the export, in the directory named after `link`'s SLAAC address
    (returned), that the host's makedumpfile reads."""
    found = re.search(rf"kdump: network: {re.escape(link)} is (fd00:[0-9a-f:]+)", capture_log)
    assert found, capture_log[-5000:]
    dumps = list((export / "dumps").iterdir())
    assert len(dumps) == 1, dumps
    # The directory is named after the SLAAC address, its colons as dashes.
    assert dumps[0].name.startswith(found.group(1).replace(":", "-") + "-"), dumps
    assert (dumps[0] / "kdump-target").read_text() == f"nfs [{HOST_FROM_GUEST6}]:/kdump\n"
    check_vmcore(dumps[0] / "vmcore", kernel_version, scratch)
    return found.group(1)


def _crash(capture: Capture, scratch: Path, extra: tuple[str, ...],
           stop: qemu.StopCondition | None = None) -> tuple[str, str]:  # fmt: skip
    """Boot the capture's main system, which crashes itself; the capture kernel's console
    once it dumped and powered off, and the whole console's end (for messages)."""
    boot = harness.run_qemu(
        capture.directory / "vmlinuz", capture.main_initrd,
        f"console=ttyS0 crashkernel=192M {NO_TIMER_CHECK}", None,
        memory="1G", log=scratch / "console.log", extra=extra, stop=stop,
    )  # fmt: skip
    context = boot.console[-5000:]
    assert boot.returncode == 0, context
    assert "sysrq: Trigger a crash" in boot.console, context
    return harness.capture_console(boot.console), context


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


def _crash_with_the_first_link_down(scratch: Path, dump: str) -> tuple[Capture, str, str]:
    """Build the capture of the `dump` keys and crash it on two NICs, the first one's
    link set down over QMP as soon as QEMU starts: the capture, its console and the
    console's end."""
    recipe = write_recipe(
        scratch, dump, extra_modules=("virtio_net",), extra_cmdline=(NO_TIMER_CHECK,)
    )
    capture = build_capture(scratch, recipe)
    socket_path = scratch / "qmp.sock"
    link_down = FirstLinkDown(socket_path)
    capture_log, context = _crash(
        capture, scratch, (*qmp_option(socket_path), *_two_nics()), link_down
    )
    assert link_down.done, link_down.reply
    return capture, capture_log, context


def test_nfs_to_an_ipv6_only_server_over_a_bond_with_its_first_link_down(
    tmp_path: Path,
) -> None:
    with ganesha(tmp_path, "::1") as (export, port):
        capture, capture_log, context = _crash_with_the_first_link_down(
            tmp_path, _nfs_over_bond("active-backup", port)
        )
    # Both ports found by MAC (the capture kernel names them eth0, eth1) and bonded.
    assert "kdump: network: bond bond0 (active-backup) of eth0 eth1" in capture_log, context
    # The kernel's own word: the first port has no link, the second carries the bond.
    assert re.search(r"bond0: \(slave eth1\): making interface the new active one", capture_log)
    assert not re.search(r"bond0: \(slave eth0\): making interface the new active one",
                         capture_log), context  # fmt: skip
    _check_nfs_dump(export, capture_log, capture.kernel_version, tmp_path)


# The host's bridge's own MAC, neither port's (networkd derives one from the machine id).
BRIDGE_MAC = "52:54:00:00:be:b0"
BRIDGE = (f'interface = "br0"\nbridge = "port-with-carrier"\nbridge_ports = '
          f'{json.dumps(list(PORTS))}\nbridge_mac = "{BRIDGE_MAC}"\n')  # fmt: skip


def test_nfs_over_a_bridge_with_its_first_link_down(tmp_path: Path) -> None:
    """Keys as `kdump-build network` writes them for a bridge of two ports (see
    tests/unit/host/test_netconfig.py): the capture makes no bridge, puts the address on
    the port with carrier (the second: the first's link is set down over QMP) and gives
    it the bridge's MAC, from which SLAAC makes the address the host's bridge has
    (EUI-64)."""
    with ganesha(tmp_path, "::1") as (export, port):
        capture, capture_log, context = _crash_with_the_first_link_down(
            tmp_path, _nfs_over(BRIDGE, port)
        )
    # Both ports found by MAC (eth0, eth1 in the capture kernel); only the second has link.
    chosen = "kdump: network: bridge br0 of eth0 eth1: carrier on eth1, using eth1"
    assert chosen in capture_log, context
    assert f"kdump: network: eth1 takes the bridge's MAC {BRIDGE_MAC}" in capture_log, context
    address = _check_nfs_dump(export, capture_log, capture.kernel_version, tmp_path, "eth1")
    # fd00::/64 and the EUI-64 of the bridge's MAC: the address the host's bridge has.
    assert address == "fd00::5054:ff:fe00:beb0", capture_log[-5000:]


def test_nfs_over_an_802_3ad_bond_with_no_lacp_partner(tmp_path: Path) -> None:
    """QEMU's user network sends no LACPDU, so no port ever has a partner. virtio-net
    reports no duplex (QEMU gives one only with `speed=`/`duplex=`), so the kernel takes
    each port as an individual link with an aggregator of its own, warns that no partner
    answered, makes one aggregator active and enables its port (bond_3ad.c,
    ad_agg_selection_logic), which carries the dump."""
    with ganesha(tmp_path, "::1") as (export, port):
        recipe = write_recipe(
            tmp_path, _nfs_over_bond("802.3ad", port), extra_modules=("virtio_net",),
            extra_cmdline=(NO_TIMER_CHECK,),
        )  # fmt: skip
        capture = build_capture(tmp_path, recipe)
        capture_log, context = _crash(capture, tmp_path, _two_nics())
    assert "kdump: network: bond bond0 (802.3ad) of eth0 eth1" in capture_log, context
    # The kernel's own words: both ports enslaved with their link up, and its 802.3ad
    # aggregator selection found no partner ...
    for nic in ("eth0", "eth1"):
        enslaved = f"bond0: (slave {nic}): Enslaving as a backup interface with an up link"
        assert enslaved in capture_log, context
    warning = "bond0: Warning: No 802.3ad response from the link partner for any adapters"
    assert warning in capture_log, context
    # ... and its values in sysfs: mode 4, no partner, one port in the active aggregator
    # (each port has its own: 1 and 2, in the order they were enslaved).
    lacp = (r"kdump: network: bond0 mode 802\.3ad 4, aggregator [12] of 1 port\(s\), "
            r"partner 00:00:00:00:00:00\r?\n")  # fmt: skip
    assert re.search(lacp, capture_log), context
    _check_nfs_dump(export, capture_log, capture.kernel_version, tmp_path)


# The relay's VLAN, and the one the capture tries first, which the relay drops.
VLAN = 42
WRONG_VLAN = 43
VLAN_NIC = "52:54:00:00:0d:42"


def _ssh_over_vlan(vlan: int, port: int, dumps: Path) -> str:
    """The keys of an ssh target on VLAN `vlan` of the NIC VLAN_NIC, host key checked."""
    return (
        f'target = "ssh"\nssh = "root@{HOST_FROM_GUEST}"\nssh_port = {port}\n'
        f'ssh_key = "client_key"\nssh_known_hosts = "known_hosts"\npath = "{dumps}"\n'
        f'network = "static"\nip = "{GUEST_ADDRESS}/24"\ninterface = "eth0"\n'
        f'interface_mac = "{VLAN_NIC}"\nvlan = {vlan}\nhostname = "vlan-guest"\n'
        "connect_timeout = 10\n"
    )


def test_ssh_over_a_vlan_after_the_wrong_vlan_failed(
    tmp_path: Path, ssh_server: tuple[Path, int]
) -> None:
    """The capture first tries the same server on VLAN 43, where the relay passes
    nothing: that attempt fails and the fallback, over VLAN 42, saves the dump. The
    relay counts every frame the guest sent by VLAN id, so the dump is known to have
    travelled tagged."""
    _, port = ssh_server
    dumps = tmp_path / "ssh-dumps"
    dumps.mkdir()
    recipe = write_recipe(
        tmp_path,
        _ssh_over_vlan(WRONG_VLAN, port, dumps)
        + 'device_timeout = 20\nfinal_action = "poweroff"\nfailure_action = "poweroff"\n'
        + "[[fallback]]\n"
        + _ssh_over_vlan(VLAN, port, dumps),
        extra_modules=("virtio_net",),
        extra_packages=tuple(SSH_PACKAGES),
        extra_cmdline=(NO_TIMER_CHECK,),
    )
    capture = build_capture(tmp_path, recipe)
    sockets = tmp_path / "relay"
    sockets.mkdir()
    with VlanRelay(sockets, VLAN) as relay:
        capture_log, context = _crash(capture, tmp_path, relay.qemu_options(VLAN_NIC))
    label = f"ssh root@{HOST_FROM_GUEST}"
    # Attempt 1, on the wrong VLAN: nothing answers, so the server cannot be reached.
    first, _, second = capture_log.partition("kdump: trying the next dump target")
    assert f"kdump: dump target 1 of 2: {label}" in first, context
    assert f"kdump: network: eth0.{WRONG_VLAN} is {GUEST_ADDRESS}" in first, context
    assert "Connect failed: No route to host" in first, context  # dbclient: no ARP answer
    assert f"kdump: FAILED: cannot create {dumps}/vlan-guest-" in first, context
    # Attempt 2, on the relay's VLAN, with the first one's link gone.
    assert f"kdump: network: eth0.{VLAN} is {GUEST_ADDRESS}" in second, context
    assert f"kdump: saved with dump target 2 of 2: {label}" in second, context
    saved = list(dumps.iterdir())
    assert len(saved) == 1, saved
    flat = saved[0] / "vmcore.flat"
    vmcore = restore_flat(flat, tmp_path)
    check_vmcore(vmcore, capture.kernel_version, tmp_path)
    # What the guest sent: tagged frames of the two VLANs (and untagged ones of the bare
    # NIC, e.g. IPv6 router solicitations), nothing else; only VLAN 42 went through. It
    # carried the dump: ssh compresses it (28.7 MB on the wire for a 39.0 MB vmcore.flat
    # here), the rest is a few kilobytes of ARP and neighbour discovery.
    assert set(relay.frames) <= {VLAN, WRONG_VLAN, UNTAGGED}, relay.frames
    assert relay.frames[WRONG_VLAN] > 0, relay.frames
    assert relay.passed == relay.frames[VLAN], (relay.passed, relay.frames)
    assert relay.octets[VLAN] > flat.stat().st_size // 2, (relay.octets, flat.stat().st_size)
    assert relay.octets[WRONG_VLAN] + relay.octets[UNTAGGED] < 64 * 1024, relay.octets
