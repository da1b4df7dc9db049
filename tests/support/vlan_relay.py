"""An 802.1Q switch port for one QEMU guest NIC, in the test process.

QEMU's user network (slirp) drops tagged frames and the build machines' kernel has no
8021q module, so a VLAN is made here: the guest's NIC sends its Ethernet frames to
this relay over a unix datagram socket (`-netdev dgram`); the relay passes on only the
frames tagged with its VLAN id, untagged, to a second dgram netdev of the same QEMU
that a hub joins to a user network, and tags every frame that comes back. Frames
untagged or tagged with another id are dropped and counted: the test then knows what
went through the VLAN and what did not.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType

# IEEE 802.1Q: the tag follows the two MAC addresses (12 bytes); it is the TPID 0x8100
# and a 16-bit TCI whose low 12 bits are the VLAN id.
MAC_BYTES = 12
TPID = 0x8100
TAG = struct.Struct("!HH")
VID_MASK = 0x0FFF
UNTAGGED = -1
# Larger than any frame QEMU sends over a dgram netdev (its packets stay below 64 KiB).
MAX_FRAME = 65536
# unix socket paths must fit sockaddr_un.sun_path (108 bytes with the NUL).
MAX_SOCKET_PATH = 107


def vlan_of(frame: bytes) -> int:
    """The VLAN id of an Ethernet frame, or UNTAGGED.

    >>> vlan_of(bytes(12) + TAG.pack(TPID, 0x2000 | 42) + b"\\x08\\x00")
    42
    >>> vlan_of(bytes(12) + b"\\x08\\x00") == UNTAGGED
    True
    """
    if len(frame) < MAC_BYTES + TAG.size:
        return UNTAGGED
    tpid, tci = TAG.unpack_from(frame, MAC_BYTES)
    return tci & VID_MASK if tpid == TPID else UNTAGGED


def untag(frame: bytes) -> bytes:
    """The frame without its 802.1Q tag."""
    return frame[:MAC_BYTES] + frame[MAC_BYTES + TAG.size :]


def tag(frame: bytes, vlan: int) -> bytes:
    """The frame with an 802.1Q tag of `vlan` (priority 0).

    >>> vlan_of(tag(bytes(12) + b"\\x08\\x00", 7)), untag(tag(b"m" * 12 + b"\\x08\\x00", 7))
    (7, b'mmmmmmmmmmmm\\x08\\x00')
    """
    return frame[:MAC_BYTES] + TAG.pack(TPID, vlan & VID_MASK) + frame[MAC_BYTES:]


class VlanRelay:
    """The relay for VLAN `vlan`, its sockets and QEMU's in `directory`; a context
    manager that runs it in a thread. `frames` and `octets` count the guest's frames by
    VLAN id (UNTAGGED for none); `passed` those that went on to the user network."""

    def __init__(self, directory: Path, vlan: int) -> None:
        self.vlan = vlan
        self.guest_side = directory / "guest-relay.sock"
        self.guest_nic = directory / "guest-nic.sock"
        self.user_side = directory / "user-relay.sock"
        self.user_port = directory / "user-port.sock"
        for path in (self.guest_side, self.guest_nic, self.user_side, self.user_port):
            if len(str(path).encode()) > MAX_SOCKET_PATH:
                raise ValueError(f"socket path too long for sockaddr_un: {path}")
        self.frames: Counter[int] = Counter()
        self.octets: Counter[int] = Counter()
        self.passed = 0
        self.returned = 0
        self._stop = threading.Event()
        self._guest = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._user = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._thread = threading.Thread(target=self._run, name=f"vlan-relay-{vlan}", daemon=True)

    def qemu_options(self, mac: str, network: str = "") -> tuple[str, ...]:
        """The guest's NIC (virtio, MAC `mac`) on this relay, and the relay's way into a
        user network with its defaults (10.0.2.0/24, the host's 127.0.0.1 as 10.0.2.2)
        and `network`'s options (`ipv6-net=...`)."""

        def dgram(name: str, local: Path, remote: Path) -> str:
            return (f"dgram,id={name},local.type=unix,local.path={local},"
                    f"remote.type=unix,remote.path={remote}")  # fmt: skip

        return (
            "-netdev", dgram("vlan-guest", self.guest_nic, self.guest_side),
            "-device", f"virtio-net-pci,netdev=vlan-guest,mac={mac}",
            "-netdev", f"user,id=vlan-user{',' if network else ''}{network}",
            "-netdev", dgram("vlan-trunk", self.user_port, self.user_side),
            "-netdev", "hubport,id=vlan-hub-user,hubid=8021,netdev=vlan-user",
            "-netdev", "hubport,id=vlan-hub-trunk,hubid=8021,netdev=vlan-trunk",
        )  # fmt: skip

    def __enter__(self) -> VlanRelay:
        self._guest.bind(str(self.guest_side))
        self._user.bind(str(self.user_side))
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._guest.close()
        self._user.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._guest, selectors.EVENT_READ, self._from_guest)
            selector.register(self._user, selectors.EVENT_READ, self._from_user)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    key.data(key.fileobj.recv(MAX_FRAME))  # type: ignore[union-attr]

    def _from_guest(self, frame: bytes) -> None:
        vlan = vlan_of(frame)
        self.frames[vlan] += 1
        self.octets[vlan] += len(frame)
        if vlan == self.vlan:
            # Counted first: whoever reads the frame then reads the counts with it.
            self.passed += 1
            self._send(self._user, untag(frame), self.user_port)

    def _from_user(self, frame: bytes) -> None:
        self.returned += 1
        self._send(self._guest, tag(frame, self.vlan), self.guest_nic)

    @staticmethod
    def _send(sock: socket.socket, frame: bytes, to: Path) -> None:
        # QEMU binds its end when it starts; until then (and after it stops) there is no
        # one to send to, as on a cable without a peer.
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            sock.sendto(frame, str(to))
