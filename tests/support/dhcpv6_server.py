"""A stateful DHCPv6 server for one guest NIC, in the test process (RFC 8415).

QEMU's user network answers only stateless DHCPv6 (Information-request), so the
capture's stateful client (busybox udhcpc6) is answered here: `Dhcpv6Relay` passes the
guest's Ethernet frames between a QEMU dgram netdev and a user network (which still
routes to the host and sends the router advertisements) and answers the frames sent to
the DHCPv6 servers' multicast port itself: Solicit with Advertise, Request (and Renew)
with Reply, each holding an IA_NA with the one address the test chose. Every answered
message is recorded, so the test knows what was leased to whom.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.vlan_relay import MAX_FRAME, VlanRelay

ETHERNET = struct.Struct("!6s6sH")
IPV6_ETHERTYPE = 0x86DD
# Version 6, traffic class and flow label 0; payload length; next header; hop limit;
# source and destination addresses.
IPV6 = struct.Struct("!IHBB16s16s")
UDP_PROTOCOL = 17
UDP = struct.Struct("!HHHH")
CLIENT_PORT, SERVER_PORT = 546, 547
# RFC 8415 section 7.3, message types.
SOLICIT, ADVERTISE, REQUEST, RENEW, REPLY = 1, 2, 3, 5, 7
# Section 21, option codes.
OPTION_CLIENTID, OPTION_SERVERID, OPTION_IA_NA, OPTION_IAADDR = 1, 2, 3, 5
OPTION_HEADER = struct.Struct("!HH")
# IA_NA: IAID, T1, T2; IAADDR: address, preferred and valid lifetimes.
IA_NA = struct.Struct("!III")
IAADDR = struct.Struct("!16sII")
# DUID-LL (section 11.4): type 3, hardware type 1 (Ethernet), the link-layer address.
DUID_LL = struct.Struct("!HH6s")
LIFETIME = 3600
NAMES = {SOLICIT: "Solicit", REQUEST: "Request", RENEW: "Renew"}


def options_of(data: bytes) -> dict[int, bytes]:
    """A DHCPv6 option list as {code: value} (the first of each code).

    >>> options_of(b"\\x00\\x01\\x00\\x02ab\\x00\\x08\\x00\\x02\\x00\\x00")
    {1: b'ab', 8: b'\\x00\\x00'}
    """
    found: dict[int, bytes] = {}
    offset = 0
    while offset + OPTION_HEADER.size <= len(data):
        code, length = OPTION_HEADER.unpack_from(data, offset)
        offset += OPTION_HEADER.size
        found.setdefault(code, data[offset : offset + length])
        offset += length
    return found


def option(code: int, value: bytes) -> bytes:
    return OPTION_HEADER.pack(code, len(value)) + value


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`.

    >>> hex(checksum(bytes.fromhex("0001f203f4f5f6f7")))
    '0x220d'
    """
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def link_local(mac: bytes) -> bytes:
    """The EUI-64 link-local address of a MAC address (RFC 4291, appendix A).

    >>> str(ipaddress.IPv6Address(link_local(bytes.fromhex("525400dd0001"))))
    'fe80::5054:ff:fedd:1'
    """
    eui = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    return b"\xfe\x80" + bytes(6) + eui


@dataclass(frozen=True)
class Message:
    """A DHCPv6 message from a client, as the server saw it."""

    kind: int
    transaction: bytes
    options: dict[int, bytes]
    mac: bytes
    source: bytes


def client_message(frame: bytes) -> Message | None:
    """The DHCPv6 client message (to the server port) a frame carries, or None."""
    if len(frame) < ETHERNET.size + IPV6.size + UDP.size + 4:
        return None
    _, mac, ethertype = ETHERNET.unpack_from(frame)
    _, _, next_header, _, source, _ = IPV6.unpack_from(frame, ETHERNET.size)
    if ethertype != IPV6_ETHERTYPE or next_header != UDP_PROTOCOL:
        return None
    _, port, _, _ = UDP.unpack_from(frame, ETHERNET.size + IPV6.size)
    if port != SERVER_PORT:
        return None
    payload = frame[ETHERNET.size + IPV6.size + UDP.size :]
    return Message(payload[0], payload[1:4], options_of(payload[4:]), mac, source)


@dataclass(frozen=True)
class Lease:
    """What the server answered: the client's message name and the address it gave."""

    asked: str
    address: str


class Dhcpv6Server:
    """Leases `address` to whichever client asks; its DUID and link-local address come
    from `mac`, the server's own (a MAC on no other NIC of the network)."""

    def __init__(self, address: str, mac: str) -> None:
        self.address = ipaddress.IPv6Address(address)
        self.mac = bytes.fromhex(mac.replace(":", ""))
        self.duid = DUID_LL.pack(3, 1, self.mac)
        self.leases: list[Lease] = []

    def answer(self, message: Message) -> bytes | None:
        """The reply frame to a client's message, or None for one it ignores (another
        server's Request, a message type it does not serve)."""
        if message.kind not in NAMES or OPTION_CLIENTID not in message.options:
            return None
        if message.kind != SOLICIT and message.options.get(OPTION_SERVERID) != self.duid:
            return None
        requested = message.options.get(OPTION_IA_NA, b"")
        if len(requested) < IA_NA.size:
            return None
        iaid = requested[:4]
        address = option(OPTION_IAADDR, IAADDR.pack(self.address.packed, LIFETIME, 2 * LIFETIME))
        ia_na = iaid + struct.pack("!II", LIFETIME // 2, LIFETIME * 4 // 5) + address
        kind = ADVERTISE if message.kind == SOLICIT else REPLY
        payload = (bytes([kind]) + message.transaction
                   + option(OPTION_CLIENTID, message.options[OPTION_CLIENTID])
                   + option(OPTION_SERVERID, self.duid) + option(OPTION_IA_NA, ia_na))  # fmt: skip
        self.leases.append(Lease(NAMES[message.kind], str(self.address)))
        return self._frame(message, payload)

    def _frame(self, message: Message, payload: bytes) -> bytes:
        source = link_local(self.mac)
        length = UDP.size + len(payload)
        pseudo = source + message.source + struct.pack("!I3xB", length, UDP_PROTOCOL)
        udp = UDP.pack(SERVER_PORT, CLIENT_PORT, length, 0) + payload
        udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
        ip = IPV6.pack(6 << 28, length, UDP_PROTOCOL, 64, source, message.source)
        return ETHERNET.pack(message.mac, self.mac, IPV6_ETHERTYPE) + ip + udp


class Dhcpv6Relay(VlanRelay):
    """The guest NIC's frames relayed to and from a user network untagged, but those for
    the DHCPv6 server port, which `server` answers; a context manager (`VlanRelay`'s
    sockets, thread and QEMU options)."""

    def __init__(self, directory: Path, server: Dhcpv6Server) -> None:
        super().__init__(directory, vlan=0)
        self.server = server

    def _from_guest(self, frame: bytes) -> None:
        message = client_message(frame)
        if message is None:
            self.passed += 1
            self._send(self._user, frame, self.user_port)
            return
        reply = self.server.answer(message)
        if reply is not None:
            self._send(self._guest, reply, self.guest_nic)

    def _from_user(self, frame: bytes) -> None:
        self.returned += 1
        self._send(self._guest, frame, self.guest_nic)


def serve_on(interface: str, server: Dhcpv6Server, seconds: float) -> None:
    """Answer on `interface` (a raw packet socket: root, e.g. in a test's own network
    namespace) for `seconds`, printing each lease as `leased ADDRESS (MESSAGE)`."""
    all_protocols = socket.htons(0x0003)  # ETH_P_ALL
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, all_protocols) as raw:
        raw.bind((interface, 0))
        raw.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = raw.recv(MAX_FRAME)
            except TimeoutError:
                continue
            message = client_message(frame)
            reply = server.answer(message) if message is not None else None
            if reply is not None:
                raw.send(reply)
                lease = server.leases[-1]
                print(f"leased {lease.address} ({lease.asked})", flush=True)


if __name__ == "__main__":
    # python -m tests.support.dhcpv6_server INTERFACE ADDRESS SERVER_MAC SECONDS
    serve_on(sys.argv[1], Dhcpv6Server(sys.argv[2], sys.argv[3]), float(sys.argv[4]))
