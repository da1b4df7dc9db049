"""Dump targets: recipe checks, the rendered /init configuration, what each adds."""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
import tomllib
from pathlib import Path
from typing import cast

import pytest

from builder.errors import RecipeError
from builder.image import runtime
from builder.image.content import target_content
from builder.image.fetch import fetch_packages
from builder.image.initrd import Member, MemberKind
from builder.image.packages import PackageRoot
from builder.image.pipeline import Steps, plan_initrd
from builder.image.programs import check_collector
from builder.recipe.model import Collector, Recipe
from builder.recipe.parse import parse_recipe
from builder.targets.network import UDHCPC_SCRIPT_PATH
from builder.targets.nfs import NfsOptions, mount_options
from builder.targets.ssh import SSH_KEY_PATH, SSH_KNOWN_HOSTS_PATH, dropbear_key
from tests.support.recipes import toml_string, write_recipe

BASE = '[source]\nroot = "/"\n[dump]\n'
HOSTILE = "x'y\"z $(touch {marker}) `touch {marker}` ; touch {marker}\n touch {marker} \\\\ $HOME"


def parse(dump: str, path: Path = Path("recipes/x.toml")) -> Recipe:
    return parse_recipe(BASE + dump, path)


def error_of(dump: str) -> str:
    with pytest.raises(RecipeError) as caught:
        parse(dump)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- recipe ---------------------------------------------------------------------------------


def test_each_target_parses() -> None:
    raw = parse('target = "raw"\ndevice = "SERIAL=kdump-raw"\n')
    assert (raw.dump.target.name, raw.dump.options.to_json()) == (
        "raw",
        {"device": "SERIAL=kdump-raw"},
    )
    nfs = parse(
        'target = "nfs"\nnfs = "10.0.2.2:/srv/kdump"\nnfs_options = ["port=2049", "soft"]\n'
    )
    assert nfs.dump.target.name == "nfs"
    assert nfs.dump.options.to_json() == {
        "nfs": "10.0.2.2:/srv/kdump", "nfs_version": "4.2", "nfs_options": ["port=2049", "soft"],
        "path": "/", "network": "dhcp", "interface": "eth0", "ip": "", "gateway": "",
        "hostname": "", "connect_timeout": 60, "interface_mac": "", "bond": "none",
        "bond_ports": [], "vlan": 0, "routes": [], "bridge": "none", "bridge_ports": [],
        "bridge_mac": "",
    }  # fmt: skip
    ssh = parse(
        'target = "ssh"\nssh = "kdump@dumps.example.org"\nssh_key = "id"\nssh_port = 2222\n'
    )
    assert {key: ssh.dump.options.to_json()[key] for key in ("ssh", "ssh_port", "ssh_key")} == {
        "ssh": "kdump@dumps.example.org", "ssh_port": 2222, "ssh_key": "id"}  # fmt: skip
    static = parse(
        'target = "ssh"\nssh = "root@10.0.2.2"\nssh_key = "id"\nnetwork = "static"\n'
        'ip = "192.168.1.5/24"\ngateway = "192.168.1.1"\nhostname = "web-01"\n'
    )
    values = static.dump.options.to_json()
    assert (values["network"], values["ip"], values["gateway"], values["hostname"]) == (
        "static", "192.168.1.5/24", "192.168.1.1", "web-01")  # fmt: skip


@pytest.mark.parametrize(
    ("dump", "message"),
    [
        ('target = "nsf"\n', "dump.target: 'nsf' is not one of local, raw, nfs, ssh"),
        ('target = "raw"\n', "dump.device: required when dump.target is raw"),
        (
            'target = "raw"\ndevice = "LABEL=x"\n',
            "dump.device: 'LABEL=x' is not one of SERIAL=..., WWN=...",
        ),
        ('target = "raw"\ndevice = "SERIAL="\n', "dump.device: 'SERIAL=': the SERIAL is 1 to 128"),
        ('target = "raw"\ndevice = "WWN=a b"\n', "dump.device: 'WWN=a b': the WWN is 1 to 128"),
        (
            'target = "raw"\ndevice = "/dev/sdb"\n',
            "dump.device: '/dev/sdb' is a kernel name, which the capture kernel may give to "
            "another disk; name the disk by SERIAL=... or WWN=... (cat /sys/block/sdb/serial ",
        ),
        (
            'target = "raw"\ndevice = "SERIAL=kdump-raw"\ncollector = "copy"\n',
            "dump.collector: a raw target needs makedumpfile",
        ),
        ('target = "nfs"\n', "dump.nfs: required when dump.target is nfs"),
        ('target = "nfs"\nnfs = "server:/x"\n', "dump.nfs: 'server:/x' is not <IPv4 address>:/"),
        ('target = "nfs"\nnfs = "10.0.2.2"\n', "dump.nfs: '10.0.2.2' is not <IPv4 address>:/"),
        ('target = "nfs"\nnfs = "10.0.2.256:/x"\n', "is not <IPv4 address>:/<export>"),
        (
            'target = "nfs"\nnfs = "10.0.2.2:/x"\nnfs_options = ["port=1,vers=3"]\n',
            "dump.nfs_options: item 0: 'port=1,vers=3' is not a valid NFS mount option",
        ),
        (
            'target = "nfs"\nnfs = "10.0.2.2:/x"\nnfs_options = ["vers=3"]\n',
            "dump.nfs_options: item 0: 'vers=3' is set by kdump-build",
        ),
        ('target = "ssh"\nssh_key = "k"\n', "dump.ssh: required when dump.target is ssh"),
        ('target = "ssh"\nssh = "10.0.2.2"\nssh_key = "k"\n', "dump.ssh: '10.0.2.2' is not user@"),
        ('target = "ssh"\nssh = "a@b;c"\nssh_key = "k"\n', "dump.ssh: 'a@b;c' is not user@host"),
        ('target = "ssh"\nssh = "-oProxy@h"\nssh_key = "k"\n', "is not user@host"),
        ('target = "ssh"\nssh = "root@h"\n', "dump.ssh_key: required when dump.target is ssh"),
        (
            'target = "ssh"\nssh = "root@h"\nssh_key = "k"\nnetwork = "static"\n',
            "dump.ip: '' needs a /prefix",
        ),
        (
            'target = "ssh"\nssh = "root@h"\nssh_key = "k"\nip = "10.0.0.2/8"\n',
            "dump.ip: only used when dump.network is static",
        ),
        (
            'target = "ssh"\nssh = "root@h"\nssh_key = "k"\nhostname = "a b"\n',
            "dump.hostname: 'a b' is not a host name",
        ),
        (
            'target = "ssh"\nssh = "root@h"\nssh_key = "k"\ninterface = "eth0;reboot"\n',
            "dump.interface: 'eth0;reboot' is not an interface name",
        ),
        (
            'device = "LABEL=k"\nnfs = "10.0.2.2:/x"\n',
            "dump.nfs: only used when dump.target is nfs",
        ),
        (
            'target = "nfs"\nnfs = "10.0.2.2:/x"\ndevice = "/dev/vda"\n',
            "dump.device: only used when dump.target is local or raw",
        ),
        ('device = "LABEL=k"\nssh_port = 22\n', "dump.ssh_port: only used when dump.target is ssh"),
        (
            'target = "ssh"\nssh = "a@b"\nssh_key = "k"\nssh_port = 0\n',
            "dump.ssh_port: 0 is not between 1 and 65535",
        ),
        (
            'target = "raw"\ndevice = "SERIAL=kdump-raw"\npath = "/x"\n',
            "dump.path: only used when dump.target is local or nfs or ssh",
        ),
    ],
)
def test_bad_target_settings(dump: str, message: str) -> None:
    assert message in error_of(dump)


# --- the rendered configuration stays data ----------------------------------------------------

SHELLS = [["dash", "-c"], ["bash", "--posix", "-c"]]


def _hostile_recipes(marker: Path) -> list[str]:
    hostile = HOSTILE.format(marker=marker)
    return [
        f"device = {toml_string('LABEL=' + hostile)}\nfstype = {toml_string(hostile)}\n"
        f"path = {toml_string('/' + hostile)}\n",
        # A serial has no blanks, but every other character a shell could read.
        'target = "raw"\ndevice = '
        + toml_string("SERIAL=x'y\"z$(touch" + str(marker) + ")`;\\")
        + "\n",
        f'target = "nfs"\nnfs = "10.0.2.2:/x"\npath = {toml_string("/" + hostile)}\n',
        f'target = "ssh"\nssh = "root@h"\nssh_key = "k"\npath = {toml_string("/" + hostile)}\n'
        'ssh_known_hosts = "kh"\n',
    ]


def _print_all(config: Path, names: list[str]) -> str:
    # One NUL-separated field per variable, in order.
    return f". {config}; printf '%s\\0' " + " ".join(f'"${name}"' for name in names)


@pytest.mark.parametrize("recipe_index", range(4))
def test_every_value_survives_three_shells(
    tmp_path: Path, busybox: Path, recipe_index: int
) -> None:
    marker = tmp_path / "pwned"
    dump = parse(_hostile_recipes(marker)[recipe_index]).dump
    values = runtime.config_values(dump)
    config = tmp_path / "kdump.conf"
    config.write_bytes(runtime.render_config(dump))
    names = list(values)
    for shell in [*SHELLS, [str(busybox), "sh", "-c"]]:
        script = _print_all(config, names)
        result = subprocess.run([*shell, script], capture_output=True, check=True)
        fields = result.stdout.decode().split("\0")[:-1]
        assert dict(zip(names, fields, strict=True)) == values, shell
        # The collect functions are defined and nothing else ran.
        result = subprocess.run(
            [*shell, f". {config}; type collect collect_stream >/dev/null && echo ok"],
            capture_output=True,
            check=True,
        )
        assert result.stdout == b"ok\n"
    assert not marker.exists()


def test_remote_path_is_one_word_for_the_server_shell(tmp_path: Path) -> None:
    """ssh's remote command is read by the server's shell: the path stays one word there too."""
    marker = tmp_path / "pwned"
    hostile = "/" + HOSTILE.format(marker=marker)
    dump = parse(
        f'target = "ssh"\nssh = "root@h"\nssh_key = "k"\npath = {toml_string(hostile)}\n'
    ).dump
    config = tmp_path / "kdump.conf"
    config.write_bytes(runtime.render_config(dump))
    # What /init sends (remote="$KDUMP_REMOTE_PATH/$name"), then what the server's shell does.
    sent = subprocess.run(
        ["dash", "-c", f'. {config}; printf "%s" "printf %s $KDUMP_REMOTE_PATH/name-1"'],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for shell in SHELLS:
        result = subprocess.run([*shell, sent], capture_output=True, check=True)
        assert result.stdout.decode() == hostile.rstrip("/") + "/name-1"
    assert not marker.exists()


def test_stream_and_mount_commands() -> None:
    dump = parse(
        'target = "raw"\ndevice = "SERIAL=kdump-raw"\ncompression = "zlib"\nlevel = 1\n'
    ).dump
    assert runtime.stream_command(dump) == [
        "makedumpfile",
        "-F",
        "-c",
        "--message-level",
        "7",
        "-d",
        "1",
        "/proc/vmcore",
    ]
    dump = parse('target = "ssh"\nssh = "a@b"\nssh_key = "k"\ncollector = "copy"\n').dump
    assert runtime.stream_command(dump) == ["cat", "/proc/vmcore"]
    assert runtime.config_values(dump)["KDUMP_STREAM_SUFFIX"] == ""
    dump = parse('target = "nfs"\nnfs = "10.1.2.3:/e"\nnfs_version = "3"\n').dump
    assert mount_options(cast(NfsOptions, dump.options)) == "vers=3,addr=10.1.2.3,proto=tcp,nolock"


# --- ssh keys -------------------------------------------------------------------------------


def _keygen(directory: Path, kind: str, passphrase: str = "") -> bytes:
    path = directory / f"key-{kind}-{len(passphrase)}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test", "-f", str(path)],
        check=True,
    )
    return path.read_bytes()


def test_openssh_key_becomes_what_dropbearconvert_writes(tmp_path: Path) -> None:
    """Differential: our conversion against dropbear's own tool, run from the Debian package."""
    packages = fetch_packages(["dropbear-bin", "libtomcrypt1", "libtommath1", "libgmp10"], "x86_64")
    unpacked = tmp_path / "dropbear"
    for package in packages:
        subprocess.run(["dpkg-deb", "-x", str(package.path), str(unpacked)], check=True)
    key = _keygen(tmp_path, "ed25519")
    converted = tmp_path / "converted"
    subprocess.run(
        [
            str(unpacked / "usr/bin/dropbearconvert"),
            "openssh",
            "dropbear",
            str(tmp_path / "key-ed25519-0"),
            str(converted),
        ],
        env={**os.environ, "LD_LIBRARY_PATH": str(unpacked / "usr/lib/x86_64-linux-gnu")},
        check=True,
        capture_output=True,
    )
    assert dropbear_key(key, "k") == converted.read_bytes()
    # A dropbear key passes through unchanged.
    assert dropbear_key(converted.read_bytes(), "k") == converted.read_bytes()


def test_unusable_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="k: the key is passphrase-protected"):
        dropbear_key(_keygen(tmp_path, "ed25519", "secret"), "k")
    with pytest.raises(RecipeError, match="k: ssh-rsa keys are not supported, use ed25519"):
        dropbear_key(_keygen(tmp_path, "rsa"), "k")
    with pytest.raises(RecipeError, match="neither an OpenSSH nor a dropbear private key"):
        dropbear_key(b"hello", "k")
    text = _keygen(tmp_path, "ed25519").decode().splitlines()
    body = base64.b64decode("".join(text[1:-1]))
    broken = body[:-40] + b"\x00" * 40
    with pytest.raises(RecipeError, match=r"^k: "):
        dropbear_key(
            (text[0] + "\n" + base64.b64encode(broken).decode() + "\n" + text[-1]).encode(), "k"
        )


# --- what each target adds to the initrd ---------------------------------------------------


SSH_PACKAGES = ("dropbear-bin", "libtomcrypt1", "libtommath1", "libgmp10")


@pytest.fixture(scope="module")
def root_with_dropbear(default_recipe: Recipe) -> PackageRoot:
    """The default recipe's packages plus dropbear's client, read once for this module."""
    packages = fetch_packages([*default_recipe.source.packages, *SSH_PACKAGES], "x86_64")
    return PackageRoot([package.path for package in packages])


def _recipe(tmp_path: Path, dump: str) -> Recipe:
    path = write_recipe(tmp_path / "recipe.toml", replace={"dump": tomllib.loads(dump)})
    return parse_recipe(path.read_text(), path)


def _members(recipe: Recipe, root: PackageRoot, version: str = "") -> dict[str, Member]:
    if not version:
        version = root.glob("/boot/vmlinuz-*")[0].split("vmlinuz-", 1)[1]
    plan = plan_initrd(recipe, root, version, Steps())
    return {member.path: member for member in plan.members()}


def test_nfs_build_adds_the_client_modules_in_order(
    tmp_path: Path, root_with_dropbear: PackageRoot
) -> None:
    recipe = _recipe(tmp_path, 'target = "nfs"\nnfs = "10.0.2.2:/srv"\n')
    members = _members(recipe, root_with_dropbear)
    modules = members[runtime.MODULES_PATH].data.decode().split()
    names = [Path(path).name for path in modules]
    for earlier, later in [
        ("sunrpc.ko", "nfs.ko"),
        ("nfs.ko", "nfsv4.ko"),
        ("virtio.ko", "ext4.ko"),
    ]:
        assert names.index(earlier) < names.index(later), names
    assert all(path in members for path in modules)
    assert members[UDHCPC_SCRIPT_PATH].mode == 0o755
    assert "/bin/udhcpc" in members


def test_ssh_build_stores_the_key_0600_and_no_host_files(
    tmp_path: Path, root_with_dropbear: PackageRoot
) -> None:
    (tmp_path / "id").write_bytes(_keygen(tmp_path, "ed25519"))
    (tmp_path / "kh").write_text("10.0.2.2 ssh-ed25519 AAAA\n")
    (tmp_path / "pre.sh").write_text("echo pre\n")
    recipe = _recipe(
        tmp_path,
        'target = "ssh"\nssh = "root@10.0.2.2"\nssh_key = "id"\nssh_known_hosts = "kh"\n'
        'pre = ["pre.sh"]\n',
    )
    members = _members(recipe, root_with_dropbear)
    key = members[SSH_KEY_PATH]
    assert key.mode == 0o600 and key.data.startswith(b"\x00\x00\x00\x0bssh-ed25519")
    assert members[SSH_KNOWN_HOSTS_PATH].data == b"10.0.2.2 ssh-ed25519 AAAA\n"
    assert members["/etc/kdump/pre.d/00"].data == b"echo pre\n"
    assert members["/usr/bin/dbclient"].kind is MemberKind.FILE
    assert any(path.endswith("/libtomcrypt.so.1") for path in members)
    assert members["/etc/passwd"].data.startswith(b"root:x:0:0:")
    # Nothing else from the build host: no host ssh directory, no second key.
    ssh_files = [path for path in members if "/.ssh/" in path or "/ssh/" in path]
    assert sorted(ssh_files) == sorted([SSH_KNOWN_HOSTS_PATH, SSH_KEY_PATH])


def test_target_files_errors_name_the_key(tmp_path: Path, root_with_dropbear: PackageRoot) -> None:
    recipe = _recipe(tmp_path, 'target = "ssh"\nssh = "root@h"\nssh_key = "nope"\n')
    with pytest.raises(RecipeError, match=r"recipe.toml: dump.ssh_key: cannot read .*nope"):
        target_content(recipe)
    recipe = _recipe(tmp_path, 'device = "LABEL=k"\npost = ["a.sh", "missing.sh"]\n')
    (tmp_path / "a.sh").write_text("true\n")
    with pytest.raises(RecipeError, match=r"dump.post: item 1: cannot read .*missing.sh"):
        _members(recipe, root_with_dropbear)
    recipe = _recipe(tmp_path, 'device = "LABEL=k"\ncompression = "zstd"\n')
    with pytest.raises(
        RecipeError, match=r"dump.compression: /usr/bin/makedumpfile .* without zstd"
    ):
        check_collector(recipe, root_with_dropbear)
    recipe = _recipe(
        tmp_path, 'target = "ssh"\nssh = "root@h"\nssh_key = "id"\nssh_accept_any_host_key = true\n'
    )
    (tmp_path / "id").write_bytes(_keygen(tmp_path, "ed25519"))
    recipe = dataclasses.replace(
        recipe,
        initrd=dataclasses.replace(recipe.initrd, modules=(), binaries=()),
        dump=dataclasses.replace(recipe.dump, collector=Collector.COPY),
    )
    without_dropbear = PackageRoot(
        [package.path for package in fetch_packages(["busybox-static"], "x86_64")]
    )
    with pytest.raises(RecipeError, match=r"dump.ssh_client: .*dbclient"):
        _members(recipe, without_dropbear, "6.1.0-0-amd64")
