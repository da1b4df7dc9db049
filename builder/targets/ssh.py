"""`ssh`: a file on another host, written through dropbear's dbclient.

The dump streams out in makedumpfile's flattened format (`kdump-build
restore` turns it back into a vmcore). dbclient reads only dropbear's own
key format, so the recipe's key is converted here, in Python.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from builder.errors import HostError, RecipeError, shown
from builder.recipe.choices import Collector
from builder.recipe.dump import (
    DumpSettings,
    EnableKeys,
    EnableRequest,
    GeneratedFile,
    HostSelection,
    MemoryPrior,
    RecipeFiles,
    Starter,
    TargetContent,
    TargetKind,
    TargetOptions,
)
from builder.recipe.parsers import (
    REQUIRED,
    Check,
    Setting,
    absolute_path,
    boolean,
    integer,
    string,
)
from builder.recipe.text import toml_string
from builder.targets import known_hosts, netlinks, network
from builder.targets.base import PATH
from builder.units import MiB

USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
SSH_KEY_PATH = "/etc/kdump/ssh/id_dropbear"
SSH_KNOWN_HOSTS_PATH = "/root/.ssh/known_hosts"
SSH_CLIENT = "/usr/bin/dbclient"
# Where `enable` sends an ssh dump unless --path says: where kdump-tools puts its own.
SSH_ENABLE_PATH = "/var/crash"
# dbclient looks up its own user; the capture side runs as root.
PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"
GROUP = b"root:x:0:\n"

OPENSSH_KEY_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
OPENSSH_KEY_END = b"-----END OPENSSH PRIVATE KEY-----"
OPENSSH_MAGIC = b"openssh-key-v1\0"
ED25519 = b"ssh-ed25519"


@dataclass(frozen=True)
class SshOptions(TargetOptions):
    ssh: str
    ssh_port: int
    ssh_key: str
    ssh_known_hosts: str
    ssh_client: str
    path: str
    network: network.NetworkOptions
    ssh_accept_any_host_key: bool = False

    @property
    def host(self) -> str:
        return self.ssh.partition("@")[2]


class SshTarget(TargetKind):
    name = "ssh"
    logs_in_with_key = True
    summary = "a file on another host written through ssh"
    rank = 3
    starter = Starter(
        keys="""\
# The server the dump is written to, through dropbear's dbclient. The key must
# exist before the build: `ssh-keygen -t ed25519 -N '' -f kdump_id_ed25519`
# (beside this recipe), and its .pub line in the server's authorized_keys. The
# server's host key, checked at every dump: `ssh-keyscan 192.168.122.1 > kdump_known_hosts`
# (compare its fingerprint with the server's). A recipe that builds from a machine
# (source.root) may leave it "" to take the server's lines from that machine's own.
ssh = "kdump@192.168.122.1"
ssh_key = "kdump_id_ed25519"
ssh_known_hosts = "kdump_known_hosts"
path = "/var/crash"
# The link: `kdump-build network <server address>` prints these keys for this
# machine's own link (bond, VLAN, static or DHCP, by MAC address).
network = "dhcp"
interface = "eth0"
""",
        modules=("virtio_pci", "virtio_net"),
        packages=("dropbear-bin",),
    )
    memory = MemoryPrior(
        32 * MiB,
        calibrated=False,
        basis="a guess: network stack, dbclient and the pipe from makedumpfile",
    )
    settings = (
        Setting("dump.ssh", string, REQUIRED, "`user@host` to write the dump to."),
        Setting("dump.ssh_port", integer(1, 65535), 22, "The ssh server's port."),
        Setting(
            "dump.ssh_key",
            string,
            REQUIRED,
            "Private key file (unencrypted ed25519 in OpenSSH or dropbear format), "
            "relative to the recipe; stored in the initrd with mode 0600.",
        ),
        Setting(
            "dump.ssh_known_hosts",
            string,
            "",
            "known_hosts file with the server's key, relative to the recipe (its lines for "
            "the server, by plain name or `[host]:port`, hashed or not, go into the capture). "
            "Empty: those lines from the known_hosts files of the machine the recipe builds "
            "from (/root/.ssh/known_hosts and /etc/ssh/ssh_known_hosts under source.root, "
            "`[host]:port` off port 22); refused in a recipe built from packages (it has no "
            "machine: nothing of the build host goes in unasked) and when none has the "
            "server. NFS has no such check.",
        ),
        Setting(
            "dump.ssh_accept_any_host_key",
            boolean,
            False,
            "Send the dump to whatever answers at dump.ssh, whatever its host key "
            "(dbclient -y -y): the machine's whole memory, keys included, to anyone on the "
            "path. Only with an empty dump.ssh_known_hosts.",
        ),
        Setting(
            "dump.ssh_client",
            absolute_path,
            SSH_CLIENT,
            "dropbear's dbclient in the source root (package dropbear-bin).",
        ),
        PATH,
        *network.SETTINGS,
    )

    def options(self, values: Mapping[str, Any], check: Check) -> SshOptions:
        destination = values["ssh"]
        user, sep, host = destination.partition("@")
        valid_host = network.IPV4.fullmatch(host) or network.HOST_NAME.fullmatch(host)
        if not (sep and USER_NAME.fullmatch(user) and valid_host):
            check.fail("dump.ssh", f"{destination!r} is not user@host")
        if values["ssh_accept_any_host_key"] and values["ssh_known_hosts"]:
            check.fail("dump.ssh_accept_any_host_key", "contradicts dump.ssh_known_hosts")
        return SshOptions(
            destination,
            values["ssh_port"],
            values["ssh_key"],
            values["ssh_known_hosts"],
            values["ssh_client"],
            values["path"],
            network.network_options(values, check),
            values["ssh_accept_any_host_key"],
        )

    def content(self, dump: DumpSettings, files: RecipeFiles) -> TargetContent:
        options = cast(SshOptions, dump.options)
        raw_key = files.read("dump.ssh_key", options.ssh_key)
        key = dropbear_key(raw_key, files.where("dump.ssh_key", options.ssh_key))
        generated = [
            GeneratedFile(SSH_KEY_PATH, key, 0o600),
            GeneratedFile("/etc/passwd", PASSWD, 0o644),
            GeneratedFile("/etc/group", GROUP, 0o644),
        ]
        if not options.ssh_accept_any_host_key:
            known = known_hosts.capture_lines(server_keys(options, files), options.host)
            generated.append(GeneratedFile(SSH_KNOWN_HOSTS_PATH, known, 0o644))
        return TargetContent(
            modules=network.network_modules(options.network),
            programs=((options.ssh_client, "dump.ssh_client"),),
            files=(*network.network_files(options.network), *generated),
            applets=network.network_applets(options.network),
        )

    def host_files(
        self, dump: DumpSettings, machine_root: Path | None
    ) -> tuple[tuple[str, str], ...]:
        options = cast(SshOptions, dump.options)
        if options.ssh_accept_any_host_key:
            known: tuple[str, ...] = ()
        elif options.ssh_known_hosts:
            known = (options.ssh_known_hosts,)
        elif machine_root is not None:  # absolute: read where they are
            known = known_hosts.existing(known_hosts.machine_files(machine_root))
        else:  # refused by `content`
            known = ()
        key = ("dump.ssh_key", options.ssh_key)
        return (key, *(("dump.ssh_known_hosts", name) for name in known))

    def config(self, dump: DumpSettings) -> dict[str, str]:
        options = cast(SshOptions, dump.options)
        path = options.path.rstrip("/")
        return {
            "KDUMP_PATH": path,
            # The ssh server's shell reads the path again: quote it once more for that shell.
            "KDUMP_REMOTE_PATH": shlex.quote(path),
            "KDUMP_SSH_DESTINATION": options.ssh,
            "KDUMP_SSH_KEY": SSH_KEY_PATH,
            "KDUMP_SSH_PORT": str(options.ssh_port),
            "KDUMP_SSH_CHECK_HOST": "no" if options.ssh_accept_any_host_key else "yes",
            "KDUMP_STREAM_SUFFIX": ".flat" if dump.collector is Collector.MAKEDUMPFILE else "",
            **network.network_config(options.network),
        }

    def label(self, dump: DumpSettings) -> str:
        return cast(SshOptions, dump.options).ssh

    def secret_paths(self, dump: DumpSettings) -> tuple[str, ...]:
        return (SSH_KEY_PATH,)

    def shell_part(self) -> bytes:
        return network.shell_part() + super().shell_part()

    def enable_keys(self, request: EnableRequest, machine_root: Path) -> EnableKeys:
        """The server from `--to USER@ADDRESS`, logged in to with `--ssh-key`; its host
        key must be in the machine's own known_hosts unless --ssh-accept-any-host-key."""
        value, port = request.destination, request.port or 22
        user, at, server = value.partition("@")
        found = netlinks.address(server)
        if not (at and USER_NAME.fullmatch(user) and found is not None and found.version == 4):
            raise HostError(f"--to: {value!r} is not USER@ADDRESS (the ssh server's IPv4 "
                            "address: the capture has no name resolver, and its ssh client "
                            "takes IPv4)")  # fmt: skip
        key = _enable_key(request.key, machine_root)
        if not request.accept_any_host_key:
            _require_host_key(value, server, port, machine_root)
        path = network.enable_path(request, SSH_ENABLE_PATH)
        lines = ["# The ssh server the dumps go to, logged in to with this key.",
                 f"target = {toml_string(self.name)}", f"ssh = {toml_string(value, 'dump.ssh')}",
                 *([f"ssh_port = {port}"] if port != 22 else []),
                 f"ssh_key = {toml_string(str(key), 'dump.ssh_key')}",
                 f"path = {toml_string(path)}"]  # fmt: skip
        if request.accept_any_host_key:
            lines += ["# Asked for with --ssh-accept-any-host-key: the dump goes to whoever "
                      "answers there.", "ssh_accept_any_host_key = true"]  # fmt: skip
        else:
            lines += ["# The server's host key, checked at every dump: this machine's own, "
                      "read from", "# /root/.ssh/known_hosts and /etc/ssh/ssh_known_hosts at "
                      "every build.", 'ssh_known_hosts = ""']  # fmt: skip
        return EnableKeys(server, tuple(lines))

    def host_selection(self, dump: DumpSettings) -> HostSelection:
        return HostSelection(None, interface_macs=cast(SshOptions, dump.options).network.macs)

    def login_key_line(self, key: bytes, where: str, comment: str) -> str | None:
        return public_key_line(key, where, comment)


def _enable_key(key: Path | None, machine_root: Path) -> Path:
    """`enable --ssh-key`, checked: dropbear's client on the machine, and a key in a form
    the capture takes that only its owner can read (ssh itself refuses others)."""
    client = machine_root / SSH_CLIENT.lstrip("/")
    if not client.is_file():
        raise HostError(f"--to: {client} is missing: the capture sends the dump with "
                        "dropbear's dbclient (apt-get install dropbear-bin)")  # fmt: skip
    if key is None:
        raise HostError("--ssh-key: needed for an ssh server: the private key the capture "
                        "logs in with, an unencrypted ed25519 key only root can read "
                        "(ssh-keygen -t ed25519 -N '' -f /etc/kdump-build/id_ed25519; its .pub "
                        "line in the server's authorized_keys)")  # fmt: skip
    try:
        dropbear_key(key.read_bytes(), f"--ssh-key: {key}")
        mode = key.stat().st_mode
    except OSError as error:
        raise HostError(f"--ssh-key: {key}: {error.strerror}") from None
    except RecipeError as error:
        raise HostError(str(error)) from None
    if mode & 0o077:
        raise HostError(f"--ssh-key: {key}: others than its owner may read it (mode "
                        f"{mode & 0o777:o}; chmod 600 it): it logs in to the dump "
                        "server")  # fmt: skip
    return key.absolute()


def _require_host_key(destination: str, server: str, port: int, machine_root: Path) -> None:
    files = known_hosts.machine_files(machine_root)
    if not known_hosts.machine_keys(server, port, files):
        name = known_hosts.lookup_name(server, port)
        raise HostError(f"--to: no host key for {name} in {' or '.join(map(str, files))}: "
                        f"connect once as root (ssh -p {port} {destination}) and compare the "
                        f"fingerprint with the server's, or add what ssh-keyscan -p {port} "
                        f"{server} prints after checking it; --ssh-accept-any-host-key sends "
                        "the dump to whoever answers there instead")  # fmt: skip


def server_keys(options: SshOptions, files: RecipeFiles) -> list[tuple[str, str]]:
    """The server's host keys: from the recipe's known_hosts file, or those of the machine
    the recipe builds from; a `RecipeError` naming dump.ssh_known_hosts when there is none."""
    key, port, host = "dump.ssh_known_hosts", options.ssh_port, options.host
    machine_root = files.machine_root()
    if options.ssh_known_hosts:
        text = files.read(key, options.ssh_known_hosts)
        # The recipe's file may name the server without its port, as dbclient does.
        names = (host, known_hosts.lookup_name(host, port))
        keys = known_hosts.server_keys(text, names)
        where = files.where(key, options.ssh_known_hosts)
    elif machine_root is None:
        raise files.key_error(
            key,
            "empty, and the recipe builds from packages, not from a machine whose "
            f"known_hosts could stand for it: name a file with the server's key (`ssh-keyscan "
            f"-p {port} {host} > kdump_known_hosts`, then compare its fingerprint with the "
            "server's), or set dump.ssh_accept_any_host_key = true",
        )
    else:
        machine = known_hosts.machine_files(machine_root)
        keys = known_hosts.machine_keys(host, port, machine)
        where = files.where(key, str(machine[0])) + "".join(f", {path}" for path in machine[1:])
    if not keys:
        raise RecipeError(
            f"{where}: no host key for {known_hosts.lookup_name(host, port)}: connect once as "
            f"root (`ssh -p {port} {options.ssh}`), name a known_hosts file, or set "
            "dump.ssh_accept_any_host_key = true"
        )
    return keys


class _WireReader:
    """Reads SSH wire-format fields (uint32 lengths, big-endian)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def uint32(self) -> int:
        if self.offset + 4 > len(self.data):
            raise ValueError("truncated")
        (value,) = struct.unpack_from(">I", self.data, self.offset)
        self.offset += 4
        return int(value)

    def string(self) -> bytes:
        length = self.uint32()
        if self.offset + length > len(self.data):
            raise ValueError("truncated")
        value = self.data[self.offset : self.offset + length]
        self.offset += length
        return value


def _ssh_string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def dropbear_key(data: bytes, name: str) -> bytes:
    """An ed25519 private key in dropbear's format, from OpenSSH's or dropbear's own.

    dropbear's dbclient (2022.83) reads only its own format: the string
    "ssh-ed25519" then one string of the 32-byte seed and the 32-byte public key.
    OpenSSH's unencrypted "openssh-key-v1" container holds the same 64 bytes.

    >>> key = _ssh_string(ED25519) + _ssh_string(bytes(64))
    >>> dropbear_key(key, "k") == key
    True
    >>> dropbear_key(b"garbage", "r.toml: dump.ssh_key: k")
    Traceback (most recent call last):
    ...
    builder.errors.RecipeError: r.toml: dump.ssh_key: k: neither an OpenSSH nor a dropbear ...
    """
    try:
        if data.startswith(_ssh_string(ED25519)):
            return _dropbear_ed25519(data)
        return _openssh_ed25519(data)
    except (ValueError, binascii.Error) as error:
        raise RecipeError(f"{name}: {error}") from None


def public_key_line(data: bytes, name: str, comment: str) -> str:
    """The authorized_keys line of the ed25519 private key `data` (OpenSSH's or dropbear's
    format): what the dump server must accept the capture's login with.

    >>> line = public_key_line(_ssh_string(ED25519) + _ssh_string(bytes(32) + b"\\x01" * 32),
    ...                        "k", "kdump-build@m")
    >>> line.split()[0], line.split()[2]
    ('ssh-ed25519', 'kdump-build@m')
    """
    reader = _WireReader(dropbear_key(data, name))
    reader.string()
    public = reader.string()[32:]  # the 32-byte seed, then the 32-byte public key
    blob = _ssh_string(ED25519) + _ssh_string(public)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def _dropbear_ed25519(data: bytes) -> bytes:
    reader = _WireReader(data)
    reader.string()
    if len(reader.string()) != 64 or reader.offset != len(data):
        raise ValueError("not a dropbear ed25519 key")
    return data


def _openssh_ed25519(data: bytes) -> bytes:
    text = data.strip()
    if not (text.startswith(OPENSSH_KEY_BEGIN) and text.endswith(OPENSSH_KEY_END)):
        raise ValueError("neither an OpenSSH nor a dropbear private key")
    body = text[len(OPENSSH_KEY_BEGIN) : -len(OPENSSH_KEY_END)]
    blob = base64.b64decode(b"".join(body.split()), validate=True)
    if not blob.startswith(OPENSSH_MAGIC):
        raise ValueError("not an openssh-key-v1 container")
    reader = _WireReader(blob[len(OPENSSH_MAGIC) :])
    cipher, kdf = reader.string(), reader.string()
    reader.string()  # kdf options
    if cipher != b"none" or kdf != b"none":
        raise ValueError("the key is passphrase-protected; the capture side cannot ask")
    if reader.uint32() != 1:
        raise ValueError("expected exactly one key")
    reader.string()  # public key blob
    private = _WireReader(reader.string())
    if private.uint32() != private.uint32():
        raise ValueError("check numbers differ (corrupt key)")
    kind = private.string()
    if kind != ED25519:
        kind_name = shown(kind.decode(errors="replace"))
        raise ValueError(f"{kind_name} keys are not supported, use ed25519")
    public = private.string()
    secret = private.string()
    if len(public) != 32 or len(secret) != 64 or secret[32:] != public:
        raise ValueError("malformed ed25519 key")
    return _ssh_string(ED25519) + _ssh_string(secret)
