"""The VLAN relay of tests/vm/test_network_links.py, with sockets standing where QEMU's
two dgram netdevs bind: what passes, what is dropped, what is counted."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.vlan_relay import TAG, TPID, UNTAGGED, VlanRelay, vlan_of

MACS = bytes.fromhex("ffffffffffff525400000d42")
IPV4 = b"\x08\x00"


def frame(vlan: int | None, payload: bytes) -> bytes:
    tag = TAG.pack(TPID, vlan) if vlan is not None else b""
    return MACS + tag + IPV4 + payload


@pytest.fixture
def ends(tmp_path: Path) -> Iterator[tuple[VlanRelay, socket.socket, socket.socket]]:
    """The relay for VLAN 42, the guest NIC's socket and the user network's."""
    with VlanRelay(tmp_path, 42) as relay:
        nic = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        user = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        nic.bind(str(relay.guest_nic))
        user.bind(str(relay.user_port))
        for end in (nic, user):
            end.settimeout(5)
        yield relay, nic, user
        nic.close()
        user.close()


def test_only_its_vlan_passes_untagged_and_replies_come_back_tagged(
    ends: tuple[VlanRelay, socket.socket, socket.socket],
) -> None:
    relay, nic, user = ends
    for vlan, payload in ((43, b"wrong"), (None, b"bare"), (42, b"right")):
        nic.sendto(frame(vlan, payload), str(relay.guest_side))
    # Datagrams keep their order: had the others passed, they would come first.
    assert user.recv(2048) == frame(None, b"right")
    user.sendto(frame(None, b"reply"), str(relay.user_side))
    reply = nic.recv(2048)
    assert (vlan_of(reply), reply) == (42, frame(42, b"reply"))
    assert relay.frames == {43: 1, UNTAGGED: 1, 42: 1}
    assert relay.octets[42] == len(frame(42, b"right"))
    assert (relay.passed, relay.returned) == (1, 1)


def test_a_socket_path_too_long_for_sockaddr_un_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    with pytest.raises(ValueError, match="socket path too long for sockaddr_un"):
        VlanRelay(deep, 42)
