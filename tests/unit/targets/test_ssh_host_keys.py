"""The ssh target checks the server's host key by default (issue 22, item 4).

On the code before, a recipe without dump.ssh_known_hosts built a capture that ran
dbclient with `-y -y`: the dump went to whoever answered at that address. Now the
keys come from the recipe's file or, for a recipe that builds from a machine
(`source.root`: this host for `enable`, the tree for `enable --root`), that machine's
own known_hosts (hashed entries too, matched against what OpenSSH's own `ssh-keygen -H`
writes); a recipe built from packages never reads the build host's. A build that
finds none is refused in one line; accepting any key takes its own explicit key.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.image.content import target_content
from builder.recipe.model import Recipe
from builder.recipe.parse import parse_recipe
from builder.targets import known_hosts, ssh
from tests.support.recipes import write_recipe

SERVER = "10.0.2.2"
KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
OTHER = "AAAAC3NzaC1lZDI1NTE5AAAAIBmbNC8K9yq0HUNCEpl2hVTA9oMTz1z2aE8zRUItLrmO"


def _recipe(tmp_path: Path, extra: str = "", port: int = 2222, machine: str = "") -> Recipe:
    """An ssh recipe; built from the machine whose root is tmp_path/`machine` when given,
    else from the default recipe's packages."""
    if not (tmp_path / "id").exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "id")], check=True)  # fmt: skip
    dump = f'target = "ssh"\nssh = "root@{SERVER}"\nssh_key = "id"\nssh_port = {port}\n{extra}'
    sections: dict[str, dict[str, object]] = {"dump": tomllib.loads(dump)}
    if machine:
        sections["source"] = {"root": machine}
    path = write_recipe(tmp_path / "recipe.toml", replace=sections)
    return parse_recipe(path.read_text(), path)


def _capture_known_hosts(recipe: Recipe) -> bytes | None:
    found = [f.data for f in target_content(recipe).files if f.path == ssh.SSH_KNOWN_HOSTS_PATH]
    return found[0] if found else None


@pytest.fixture
def host_files(tmp_path: Path) -> tuple[Path, Path]:
    """A machine's known_hosts files, where root's ssh keeps them under its root
    directory tmp_path/machine (a tree, as `enable --root` arms)."""
    user, system = (
        tmp_path / "machine/root/.ssh/known_hosts",
        tmp_path / "machine/etc/ssh/ssh_known_hosts",
    )
    for path in (user, system):
        path.parent.mkdir(parents=True)
    return user, system


def test_hashed_host_entries_are_found_as_ssh_keygen_writes_them(
    tmp_path: Path, host_files: tuple[Path, Path]
) -> None:
    user, system = host_files
    user.write_text(
        f"[{SERVER}]:2222 ssh-ed25519 {KEY}\n"
        f"{SERVER} ssh-ed25519 {OTHER}\n"  # port 22: another server for OpenSSH
        f"[other]:2222 ssh-ed25519 {OTHER}\n"
    )
    # OpenSSH's own hashing (HashKnownHosts): |1|salt|HMAC-SHA1 of "[10.0.2.2]:2222".
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(user)], check=True, capture_output=True)
    assert SERVER not in user.read_text() and user.read_text().startswith("|1|")
    system.write_text(f"# the system's\n@cert-authority * ssh-ed25519 {OTHER}\n")
    recipe = _recipe(tmp_path, machine="machine")
    assert _capture_known_hosts(recipe) == f"{SERVER} ssh-ed25519 {KEY}\n".encode()
    assert ssh.SshTarget().config(recipe.dump)["KDUMP_SSH_CHECK_HOST"] == "yes"
    # Root reads them at every build: the trust check sees them as the target's host files.
    assert ssh.SshTarget().host_files(recipe.dump, recipe.machine_root) == (
        ("dump.ssh_key", "id"), ("dump.ssh_known_hosts", str(user)),
        ("dump.ssh_known_hosts", str(system)))  # fmt: skip


def test_ssh_keygen_finds_what_we_match(tmp_path: Path) -> None:
    """Differential: `ssh-keygen -F` and our matcher agree on a hashed file."""
    hosts = tmp_path / "known_hosts"
    names = ["10.0.2.2", "[10.0.2.2]:2222", "[dumps.example.org]:22022", "dumps.example.org"]
    hosts.write_text("".join(f"{name} ssh-ed25519 {KEY}\n" for name in names[1:3]))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hosts)], check=True, capture_output=True)
    for name in names:
        theirs = subprocess.run(["ssh-keygen", "-F", name, "-f", str(hosts)],
                                capture_output=True, check=False).returncode == 0  # fmt: skip
        ours = bool(known_hosts.server_keys(hosts.read_bytes(), (name,)))
        assert (name, ours) == (name, theirs)


def test_a_build_without_any_host_key_is_refused_in_one_line(
    tmp_path: Path, host_files: tuple[Path, Path]
) -> None:
    user, system = host_files
    user.write_text(f"{SERVER} ssh-ed25519 {KEY}\n")  # port 22's key, not port 2222's
    with pytest.raises(RecipeError) as raised:
        target_content(_recipe(tmp_path, machine="machine"))
    assert str(raised.value) == (
        f"{tmp_path}/recipe.toml: dump.ssh_known_hosts: {user}, {system}: no host key for "
        f"[{SERVER}]:2222: connect once as root (`ssh -p 2222 root@{SERVER}`), name a "
        "known_hosts file, or set dump.ssh_accept_any_host_key = true"
    )


def test_a_recipe_built_from_packages_never_reads_the_build_hosts_known_hosts(
    tmp_path: Path,
) -> None:
    """The build host's own files are not the recipe's to take: a packaging pipeline
    building for other machines names the file, or is refused (on the code before, it
    read this machine's /root/.ssh/known_hosts into the capture unasked)."""
    recipe = _recipe(tmp_path)
    assert recipe.machine_root is None
    with pytest.raises(RecipeError) as raised:
        target_content(recipe)
    assert str(raised.value) == (
        f"{tmp_path}/recipe.toml: dump.ssh_known_hosts: empty, and the recipe builds from "
        "packages, not from a machine whose known_hosts could stand for it: name a file with "
        f"the server's key (`ssh-keyscan -p 2222 {SERVER} > kdump_known_hosts`, then compare "
        "its fingerprint with the server's), or set dump.ssh_accept_any_host_key = true"
    )
    assert ssh.SshTarget().host_files(recipe.dump, None) == (("dump.ssh_key", "id"),)


def test_the_recipe_file_gives_only_the_servers_lines(
    tmp_path: Path, host_files: tuple[Path, Path]
) -> None:
    (tmp_path / "kh").write_text(f"{SERVER} ssh-ed25519 {KEY}\nelsewhere ssh-ed25519 {OTHER}\n")
    recipe = _recipe(tmp_path, 'ssh_known_hosts = "kh"\n')
    assert _capture_known_hosts(recipe) == f"{SERVER} ssh-ed25519 {KEY}\n".encode()
    (tmp_path / "kh").write_text(f"elsewhere ssh-ed25519 {OTHER}\n")
    with pytest.raises(RecipeError, match=r"recipe.toml: dump.ssh_known_hosts: .*/kh: no host key"):
        target_content(recipe)


def test_accepting_any_host_key_is_said_explicitly(
    tmp_path: Path, host_files: tuple[Path, Path]
) -> None:
    recipe = _recipe(tmp_path, "ssh_accept_any_host_key = true\n")
    assert _capture_known_hosts(recipe) is None
    assert ssh.SshTarget().config(recipe.dump)["KDUMP_SSH_CHECK_HOST"] == "no"
    assert ssh.SshTarget().host_files(recipe.dump, recipe.machine_root) == (("dump.ssh_key", "id"),)
    with pytest.raises(RecipeError) as raised:
        _recipe(tmp_path, 'ssh_accept_any_host_key = true\nssh_known_hosts = "kh"\n')
    assert str(raised.value) == (
        f"{tmp_path}/recipe.toml: dump.ssh_accept_any_host_key: contradicts dump.ssh_known_hosts"
    )
