"""`enable --target nfs|ssh --to SERVER` writes this machine's recipe for a network dump
(issue 22, items 3 and 4): the target's keys, the link from the machine's own network
files (interfaces by MAC), the NIC drivers chosen from /sys for that link only, the ssh
server's host key from root's known_hosts; and every bad input refused in one line
naming the option, with the previous recipe left whole and no capture built.

The machine is a temporary root of real Debian packages (the one test_enable builds)
with an ifupdown configuration and a /sys/class/net beside it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import HostError, KdumpBuildError
from builder.host.enable import disable, enable, write_host_recipe
from builder.host.managed import is_unedited
from builder.host.netrecipe import NetworkRequest, network_request
from builder.host.paths import HostPaths
from builder.host.probe import installed_kernels
from builder.image.hostonly import permanent_mac
from builder.recipe.dump import EnableRequest
from builder.recipe.parse import load_recipe
from tests.conftest import run_cli
from tests.unit.host.test_enable import OFF, facts_for, sysroot

__all__ = ["sysroot"]  # the module fixture: a machine root of real Debian packages

SERVER = "192.0.2.1"
HOST_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
INTERFACES = """\
auto eth0
iface eth0 inet static
    address 192.0.2.2/24
    gateway 192.0.2.254
"""


def _host_card() -> tuple[str, str]:
    """This build host's first network card that sits on a device, and its MAC: the
    capture's driver is chosen from the real /sys for it."""
    net = Path("/sys/class/net")
    for card in sorted(net.iterdir()):
        if (card / "device").exists() and permanent_mac(card):
            return card.name, permanent_mac(card)
    raise AssertionError("this build host has no network card on a device")


@pytest.fixture
def machine(sysroot: Path) -> Iterator[HostPaths]:
    """The machine with eth0 (this host's card's MAC) configured by ifupdown; the test's
    recipe, captures and the rest are removed after it."""
    paths = HostPaths(sysroot)
    (sysroot / "etc/network").mkdir(parents=True, exist_ok=True)
    (sysroot / "etc/network/interfaces").write_text(INTERFACES)
    (sysroot / "sys/class/net/eth0").mkdir(parents=True, exist_ok=True)
    (sysroot / "sys/class/net/eth0/address").write_text(_host_card()[1] + "\n")
    yield paths
    made = (paths.config_dir, paths.captures, sysroot / "root/.ssh", sysroot / "usr/bin/dbclient")
    subprocess.run(["rm", "-rf", *map(str, made)], check=True)


def _nfs(to: str = f"{SERVER}:/srv/dumps", **options: object) -> NetworkRequest:
    interface = str(options.pop("interface", "eth0"))
    fallback = bool(options.pop("fallback_local", False))
    return network_request("nfs", EnableRequest(to, **options), interface, fallback)  # type: ignore[arg-type]


def _ssh_machine(paths: HostPaths, key_mode: int = 0o600) -> Path:
    """dbclient's place in the machine, root's known_hosts with the server, and a key."""
    (paths.root / "usr/bin/dbclient").write_bytes(b"")  # only its presence is checked here
    known = paths.root / "root/.ssh/known_hosts"
    known.parent.mkdir(parents=True, exist_ok=True)
    known.write_text(f"{SERVER} ssh-ed25519 {HOST_KEY}\n")
    key = paths.config_dir / "id_ed25519"
    key.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key.chmod(key_mode)
    return key


def test_enable_nfs(machine: HostPaths) -> None:
    """The whole enable: recipe, a capture per kernel, whose NIC driver is the one card's."""
    lines: list[str] = []
    enable(None, lines.append, machine, OFF, facts_for(machine.root), _nfs())
    text = machine.recipe.read_text()
    mac = _host_card()[1]
    assert is_unedited(machine.recipe)
    assert (
        "[dump]\n# The NFS export the dumps go to. NFS checks no host key: use it on a network "
        'you trust.\ntarget = "nfs"\nnfs = "192.0.2.1:/srv/dumps"\npath = "/"\n'
        f"# The link to 192.0.2.1 as this machine configures it ({machine.root}/etc/network/"
        "interfaces:2),\n# its network cards named by MAC address.\n"
        f'network = "static"\ninterface = "eth0"\ninterface_mac = "{mac}"\n'
        'ip = "192.0.2.2/24"\ngateway = "192.0.2.254"\n\n[crashkernel]\n'
    ) in text
    recipe = load_recipe(machine.recipe)
    selection = recipe.dump.target.host_selection(recipe.dump)
    assert selection.block_device is None and selection.interface_macs == (mac,)
    (version,) = installed_kernels(machine)
    record = json.loads((machine.capture(version) / "host.json").read_text())
    assert record["kernel_version"] == version
    assert "  dump to   nfs 192.0.2.1:/srv/dumps" in lines
    assert lines[-1].startswith("reboot needed: crashkernel=")


def test_a_local_fallback(machine: HostPaths) -> None:
    from builder.host.enable import write_network_recipe

    write_network_recipe(_nfs(fallback_local=True), facts_for(machine.root), machine, print)
    text = machine.recipe.read_text()
    assert 'gateway = "192.0.2.254"\nkeep = 3\n\n[[dump.fallback]]\n# When the server ' in text
    recipe = load_recipe(machine.recipe)
    assert [str(attempt.target) for attempt in recipe.dump.attempts()] == ["nfs", "local"]
    assert recipe.dump.to_json()["fallback"][0]["device"] == "LABEL=kdump"
    assert recipe.dump.keep == 3


def test_enable_ssh_takes_the_host_key_from_root_known_hosts(machine: HostPaths) -> None:
    from builder.host.enable import write_network_recipe

    key = _ssh_machine(machine)
    request = network_request("ssh", EnableRequest(f"kdump@{SERVER}", key=key, port=2222),
                              "eth0")  # fmt: skip
    # Port 2222: root's ssh files it as [192.0.2.1]:2222.
    (machine.root / "root/.ssh/known_hosts").write_text(f"[{SERVER}]:2222 ssh-ed25519 {HOST_KEY}\n")
    write_network_recipe(request, facts_for(machine.root), machine, print)
    recipe = load_recipe(machine.recipe)
    dump = recipe.dump.to_json()
    assert (dump["target"], dump["ssh"], dump["ssh_port"]) == ("ssh", "kdump@192.0.2.1", 2222)
    assert (dump["ssh_key"], dump["ssh_known_hosts"]) == (str(key), "")
    assert dump["ssh_accept_any_host_key"] is False and dump["path"] == "/var/crash"
    assert dump["interface_mac"] == _host_card()[1]


def _previous_recipe(paths: HostPaths) -> bytes:
    """The local recipe enable wrote before: what a refused `--target` must leave whole."""
    write_host_recipe(facts_for(paths.root), paths)
    return paths.recipe.read_bytes()


def _refusal(paths: HostPaths, request: NetworkRequest) -> str:
    before = _previous_recipe(paths)
    with pytest.raises(KdumpBuildError) as refused:
        enable(None, print, paths, OFF, facts_for(paths.root), request)
    assert paths.recipe.read_bytes() == before, "the previous recipe is left whole"
    assert not paths.captures.exists(), "no capture built"
    return str(refused.value).replace(str(paths.root), "")


@pytest.mark.parametrize(
    ("request_of", "message"),
    [
        (lambda: _nfs("nfs.example.org:/srv"),
         "--to: 'nfs.example.org:/srv' is not ADDRESS:/EXPORT (the NFS server's IPv4 address, "
         "or its IPv6 address in brackets: [fd00::2]:/srv; the capture has no name resolver)"),
        (lambda: _nfs(SERVER),
         "--to: '192.0.2.1' is not ADDRESS:/EXPORT (the NFS server's IPv4 address, or its IPv6 "
         "address in brackets: [fd00::2]:/srv; the capture has no name resolver)"),
        (lambda: _nfs(path="dumps"),
         "--path: 'dumps' is not an absolute path (the directory on the server the dumps go "
         "below)"),
        (lambda: _nfs(key=Path("/etc/kdump-build/id")),
         "--ssh-key: not for an NFS export (it has no login)"),
        (lambda: _nfs(interface="eth1"),
         "--to: no configuration for eth1 (the link to the dump server 192.0.2.1) in ifupdown, "
         "systemd-networkd or NetworkManager files"),
        (lambda: _nfs("[fd00::1]:/srv"),
         "--to: /etc/network/interfaces:2: eth0 has no IPv6 address configured (the dump "
         "server is IPv6)"),
        (lambda: network_request("raw", EnableRequest("SERIAL=x")),
         "--target: raw: enable writes a recipe for a network target only (a local one "
         "without --target)"),
        (lambda: network_request("ssh", EnableRequest("kdump@fd00::1")),
         "--to: 'kdump@fd00::1' is not USER@ADDRESS (the ssh server's IPv4 address: the capture "
         "has no name resolver, and its ssh client takes IPv4)"),
        (lambda: network_request("ssh", EnableRequest(f"kdump@{SERVER}")),
         "--to: /usr/bin/dbclient is missing: the capture sends the dump with dropbear's "
         "dbclient (apt-get install dropbear-bin)"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_anything_is_written(
    machine: HostPaths, request_of: object, message: str
) -> None:
    assert callable(request_of)
    assert _refusal(machine, request_of()) == message


@pytest.mark.parametrize(
    ("interfaces", "message"),
    [
        ("iface eth0 inet6 dhcp\n",
         "--to: /etc/network/interfaces:1: iface eth0 inet6 dhcp: the capture does dhcp "
         "(IPv4), static and auto (SLAAC) only"),
        ("iface bond0 inet dhcp\n  bond-slaves eth0\n  bond-mode balance-rr\n",
         "--to: /etc/network/interfaces:1: bond-mode: 'balance-rr': the capture bonds only "
         "active-backup and 802.3ad"),
    ],
)  # fmt: skip
def test_a_link_the_capture_cannot_make_is_refused(
    machine: HostPaths, interfaces: str, message: str
) -> None:
    (machine.root / "etc/network/interfaces").write_text(interfaces)
    server, interface = ("fd00::1", "eth0") if "inet6" in interfaces else (SERVER, "bond0")
    request = network_request("nfs", EnableRequest(f"[{server}]:/srv" if ":" in server
                                                   else f"{server}:/srv"), interface)  # fmt: skip
    assert _refusal(machine, request) == message


def test_ssh_refusals(machine: HostPaths) -> None:
    key = _ssh_machine(machine, key_mode=0o644)

    def ssh(**options: object) -> NetworkRequest:
        return network_request("ssh", EnableRequest(f"kdump@{SERVER}", **options), "eth0")  # type: ignore[arg-type]

    assert _refusal(machine, ssh(key=key)) == (
        "--ssh-key: /etc/kdump-build/id_ed25519: others than its owner may read it (mode 644; "
        "chmod 600 it): it logs in to the dump server"
    )
    key.chmod(0o600)
    (machine.root / "root/.ssh/known_hosts").write_text(f"10.9.9.9 ssh-ed25519 {HOST_KEY}\n")
    assert _refusal(machine, ssh(key=key)) == (
        "--to: no host key for 192.0.2.1 in /root/.ssh/known_hosts or /etc/ssh/ssh_known_hosts: "
        "connect once as root (ssh -p 22 kdump@192.0.2.1) and compare the fingerprint with the "
        "server's, or add what ssh-keyscan -p 22 192.0.2.1 prints after checking it; "
        "--ssh-accept-any-host-key sends the dump to whoever answers there instead"
    )
    (machine.root / "garbage").write_bytes(b"not a key\n")
    os.chmod(machine.root / "garbage", 0o600)
    assert _refusal(machine, ssh(key=machine.root / "garbage")).startswith(
        "--ssh-key: /garbage: neither an OpenSSH nor a dropbear"
    )
    # Asked for explicitly, any host key: written, and said in the recipe.
    from builder.host.enable import write_network_recipe

    write_network_recipe(ssh(key=key, accept_any_host_key=True), facts_for(machine.root),
                         machine, print)  # fmt: skip
    assert "ssh_accept_any_host_key = true\n" in machine.recipe.read_text()


def test_enable_ssh_without_a_key_makes_the_captures_own(machine: HostPaths) -> None:
    """No --ssh-key: a key of the capture's own, made once, 0600, and its public line said;
    a second enable reuses it, a refusal leaves none behind, and a file of the admin's at
    its place is never replaced."""
    from builder.host.enable import write_network_recipe

    _ssh_machine(machine)
    request = network_request("ssh", EnableRequest(f"kdump@{SERVER}"), "eth0")
    own = machine.config_dir / "kdump_id_ed25519"
    (machine.root / "root/.ssh/known_hosts").write_text(f"10.9.9.9 ssh-ed25519 {HOST_KEY}\n")
    assert _refusal(machine, request).startswith("--to: no host key for 192.0.2.1 in ")
    assert not own.exists(), "a refused enable leaves no key it made"
    (machine.root / "root/.ssh/known_hosts").write_text(f"{SERVER} ssh-ed25519 {HOST_KEY}\n")
    said: list[str] = []
    write_network_recipe(request, facts_for(machine.root), machine, said.append)
    info = own.stat()
    assert (info.st_mode & 0o777, info.st_uid) == (0o600, 0)
    assert load_recipe(machine.recipe).dump.to_json()["ssh_key"] == str(own)
    # The line, checked against what OpenSSH itself derives from the private key.
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(own)], capture_output=True,
                            text=True, check=True).stdout.split()[:2]  # fmt: skip
    assert said[:3] == [
        f"ssh key: made {own} (ed25519, only root reads it) for the capture's login; it stays "
        "after disable, for the next enable",
        f"ssh key: {own}; the capture logs in to kdump@{SERVER} with it: add this line to "
        f"~kdump/.ssh/authorized_keys on {SERVER} (once):",
        f"  {public[0]} {public[1]} kdump-build@{socket.gethostname()}",
    ]
    before = own.read_bytes()
    said.clear()
    write_network_recipe(request, facts_for(machine.root), machine, said.append)
    assert own.read_bytes() == before and not said[0].startswith("ssh key: made"), said
    disable(print, machine, OFF)  # the server's authorized_keys line stays right
    assert own.read_bytes() == before
    # Not the capture's: refused as a key, and left as it was.
    own.write_text("the admin's notes\n")
    machine.recipe.unlink()
    assert _refusal(machine, request).startswith(
        "--ssh-key: /etc/kdump-build/kdump_id_ed25519: neither an OpenSSH nor a dropbear"
    )
    assert own.read_text() == "the admin's notes\n"


def test_an_edited_recipe_is_not_replaced(machine: HostPaths) -> None:
    _previous_recipe(machine)
    with machine.recipe.open("a") as recipe:
        recipe.write("# mine\n")
    edited = machine.recipe.read_bytes()
    with pytest.raises(HostError) as refused:
        enable(None, print, machine, OFF, facts_for(machine.root), _nfs())
    assert str(refused.value) == (
        f"--target: {machine.recipe} was edited since kdump-build wrote it, or is not its: set "
        "its [dump] keys by hand (kdump-build network SERVER prints the link's), or move it away"
    )
    assert machine.recipe.read_bytes() == edited


def test_a_failed_build_puts_the_previous_recipe_back(machine: HostPaths) -> None:
    """The recipe names a card this build host does not have: modules = "auto" finds no
    driver for it, the build fails after the recipe was written, and the previous one is
    back."""
    (machine.root / "sys/class/net/eth0/address").write_text("52:54:00:00:00:99\n")
    message = _refusal(machine, _nfs())
    assert message == (
        'initrd.modules = "auto": no network card of this host has the MAC '
        "address 52:54:00:00:00:99 (dump.interface_mac or dump.bond_ports)"
    )


def test_the_options_are_checked_before_anything_runs(tmp_path: Path) -> None:
    """What the command line alone refutes: exit 2, one line, before enable touches the
    machine (these tests run as root)."""
    cases = {
        ("--target", "nfs"): "Invalid value for --to: --target and --to go together",
        ("--to", "10.0.2.2:/srv"): "Invalid value for --target: --target and --to go together",
        ("--path", "/x"): "Invalid value for --path: only with --target and --to",
        ("--ssh-key", "k"): "Invalid value for --ssh-key: only with --target and --to",
        ("--fallback-local",): "Invalid value for --fallback-local: only with --target and --to",
        ("--target", "nfs", "--to", "10.0.2.2:/srv", "--root", str(tmp_path)):
            "Invalid value for --target: not with --root: a tree has no /sys to name its network "
            "cards by MAC address",
        ("--target", "nfs", "--to", "10.0.2.2:/srv", str(tmp_path / "r.toml")):
            "Invalid value for --target: not with a RECIPE",
    }  # fmt: skip
    for arguments, message in cases.items():
        result = run_cli("enable", *arguments)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.startswith(f"kdump-build: error: {message}"), result.stderr
        assert len(result.stderr.splitlines()) == 1
    unknown = run_cli("enable", "--target", "nsf", "--to", "10.0.2.2:/srv")
    assert (unknown.returncode, unknown.stderr) == (
        2,
        "kdump-build: error: --target: 'nsf' is not one of local, raw, nfs, ssh\n",
    )


@pytest.mark.parametrize("target", ["nfs", "ssh"])
def test_a_machine_without_a_kernel_is_refused_before_the_server(
    tmp_path: Path, target: str
) -> None:
    """The machine's own want comes first: with no installed kernel, a --to that is no
    server of that target is not even looked at, and no key is made."""
    paths = HostPaths(tmp_path)
    request = network_request(target, EnableRequest("nfs.example.org"), "eth0")
    with pytest.raises(HostError) as refused:
        enable(None, print, paths, OFF, None, request)
    assert str(refused.value) == (
        f"{tmp_path}/boot: no kernel image (vmlinuz-*) with modules in {tmp_path}/lib/modules"
    )
    assert not paths.config_dir.exists()
