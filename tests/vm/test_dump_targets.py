"""Every dump target on real parts: build, boot, crash, capture, check on the host.

Each test is one crash cycle under TCG (~30-40 s). The network targets talk to
servers the test starts on 127.0.0.1 (QEMU's user network shows the host's
loopback to the guest as 10.0.2.2): nfs-ganesha for NFS, OpenSSH's sshd for
ssh. Every vmcore is read back on the host with `makedumpfile --dump-dmesg`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support import qemu, recipes
from tests.support.paths import DEFAULT_RECIPE
from tests.vm import harness

pytestmark = pytest.mark.vm

# The guest's view of the host's 127.0.0.1, and the address QEMU's DHCP gives it.
HOST_FROM_GUEST = "10.0.2.2"
GUEST_ADDRESS = "10.0.2.15"
DUMP_DIR_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{6}$")
SSH_PACKAGES = ["dropbear-bin", "libtomcrypt1", "libtommath1", "libgmp10"]
SERVER_TOOLS = ("ganesha.nfsd", "sshd", "ssh-keygen")


@dataclass(frozen=True)
class Cycle:
    console: str
    returncode: int | None
    kernel_version: str


def write_recipe(
    directory: Path,
    dump: str,
    *,
    extra_modules: tuple[str, ...] = (),
    extra_packages: tuple[str, ...] = (),
    extra_cmdline: tuple[str, ...] = (),
) -> Path:
    """The default recipe with its [dump] table replaced (and more modules, packages or
    capture command line words)."""
    default = tomllib.loads(DEFAULT_RECIPE.read_text())
    changes = {
        "initrd": {"modules": [*extra_modules, *default["initrd"]["modules"]]},
        "source": {"packages": [*extra_packages, *default["source"]["packages"]]},
        "kernel": {"cmdline_append": [*default["kernel"]["cmdline_append"], *extra_cmdline]},
    }
    dump_table = tomllib.loads(dump)
    return recipes.write_recipe(directory / "recipe.toml", changes, replace={"dump": dump_table})


@dataclass(frozen=True)
class Capture:
    """A built capture side and the main initrd that loads it."""

    directory: Path
    main_initrd: Path
    kernel_version: str


def build_capture(directory: Path, recipe: Path) -> Capture:
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    capture = directory / "capture"
    result = run_cli(str(recipe), "-o", str(capture), "--json")
    assert result.returncode == 0, result.stderr
    main_initrd = directory / "main-initrd.img"
    main_initrd.write_bytes(harness.build_main_initrd(capture))
    return Capture(capture, main_initrd, json.loads(result.stdout)["kernel"])


def boot_and_crash(
    tmp_path: Path, capture: Capture, disk: Path | None, extra: tuple[str, ...] = ()
) -> Cycle:
    """Boot the main kernel, load the capture side, crash through sysrq."""
    boot = harness.run_qemu(
        capture.directory / "vmlinuz",
        capture.main_initrd,
        "console=ttyS0 crashkernel=192M",
        disk,
        memory="1G",
        log=tmp_path / "console.log",
        extra=extra,
    )
    context = boot.console[-4000:]
    assert "main: kexec_crash_loaded=1" in boot.console, context
    assert "sysrq: Trigger a crash" in boot.console, context
    return Cycle(boot.console, boot.returncode, capture.kernel_version)


def crash_cycle(
    tmp_path: Path, recipe: Path, disk: Path | None, extra: tuple[str, ...] = ()
) -> Cycle:
    """Build the capture side from `recipe`, boot the main kernel, crash it."""
    return boot_and_crash(tmp_path, build_capture(tmp_path, recipe), disk, extra)


def check_vmcore(vmcore: Path, kernel_version: str, scratch: Path) -> None:
    """The host's independent reading of a vmcore shows the crash."""
    log = harness.dump_dmesg(vmcore, scratch / f"{vmcore.name}.dmesg")
    assert "sysrq triggered crash" in log
    assert f"Linux version {kernel_version}" in log


def restore_flat(flat: Path, scratch: Path) -> Path:
    """`kdump-build restore` and `makedumpfile -R` agree on a flattened dump."""
    ours = scratch / "vmcore.restored"
    result = run_cli("restore", str(flat), str(ours))
    assert result.returncode == 0, result.stderr
    theirs = scratch / "vmcore.makedumpfile-R"
    with open(flat, "rb") as stream:
        subprocess.run(
            ["makedumpfile", "-R", str(theirs)], stdin=stream, check=True, capture_output=True
        )
    assert ours.read_bytes() == theirs.read_bytes()
    return ours


def free_port(bind: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((bind, 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, bind: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited: {log.read_text(errors='replace')[-3000:]}"
        try:
            socket.create_connection((bind, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {bind}:{port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_server_tools_present() -> None:
    missing = [tool for tool in SERVER_TOOLS if shutil.which(tool) is None]
    assert not missing, f"install {missing} (./bootstrap test does)"


def test_local_by_uuid_with_hooks(tmp_path: Path) -> None:
    uuid = "5f1b6c0e-7d0a-4c41-9d7e-2b1f0a7c9e11"
    (tmp_path / "pre.sh").write_text(
        'echo "hook: pre target=$KDUMP_TARGET status=[$KDUMP_STATUS]"\n'
    )
    (tmp_path / "post.sh").write_text(
        'echo "hook: post status=$KDUMP_STATUS"\n'
        'echo "post hook was here" > "$KDUMP_DUMP_DIR/post-hook.txt"\n'
    )
    recipe = write_recipe(
        tmp_path,
        f'target = "local"\ndevice = "UUID={uuid}"\npath = "/crash/dumps/"\n'
        'pre = ["pre.sh"]\npost = ["post.sh"]\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n',
    )
    disk = tmp_path / "dump.img"
    # The label is not what the recipe asks for: the UUID must find the disk.
    harness.make_dump_disk(disk, label="other", uuid=uuid)
    cycle = crash_cycle(tmp_path, recipe, disk)
    context = cycle.console[-4000:]
    assert cycle.returncode == 0, context
    assert "hook: pre target=local status=[]" in cycle.console, context
    assert "hook: post status=saved" in cycle.console, context
    files = harness.extract_disk(disk, tmp_path / "disk")
    vmcores = [path for path in files if path.name == "vmcore"]
    assert len(vmcores) == 1, files
    dump_dir = vmcores[0].parent
    assert dump_dir.parent == tmp_path / "disk" / "crash" / "dumps"
    assert DUMP_DIR_NAME.match(dump_dir.name), dump_dir
    assert sorted(path.name for path in dump_dir.iterdir()) == [
        "collector.log",
        "kdump-target",
        "post-hook.txt",
        "vmcore",
        "vmcore-dmesg.txt",
    ]
    # The dump is this machine's memory: /init writes it for root's eyes only (umask 077).
    assert modes_below(dump_dir) == {".": 0o700, "collector.log": 0o600, "kdump-target": 0o600,
                                     "post-hook.txt": 0o600, "vmcore": 0o600,
                                     "vmcore-dmesg.txt": 0o600}  # fmt: skip
    check_vmcore(vmcores[0], cycle.kernel_version, tmp_path)


def modes_below(directory: Path) -> dict[str, int]:
    """The permission bits of `directory` (as ".") and of each entry in it."""
    found = {".": directory.stat().st_mode & 0o777}
    found.update({path.name: path.stat().st_mode & 0o777 for path in directory.iterdir()})
    return found


@contextlib.contextmanager
def ganesha(
    directory: Path, bind: str = "127.0.0.1", port: int | None = None
) -> Iterator[tuple[Path, int]]:
    """nfs-ganesha (NFSv4 only, VFS backend) on `bind`, exporting a temp dir as /kdump;
    on `port` (a free one when None)."""
    export = directory / "export"
    export.mkdir()
    recovery = directory / "ganesha-recovery"
    recovery.mkdir()
    port = port or free_port(bind)
    config = directory / "ganesha.conf"
    config.write_text(
        f"""
NFS_CORE_PARAM {{
    Bind_addr = {bind}; NFS_Port = {port}; Protocols = 4;
    Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false;
}}
NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = "{recovery}"; }}
EXPORT {{
    Export_Id = 1; Path = "{export}"; Pseudo = /kdump; Access_Type = RW;
    Squash = No_Root_Squash; SecType = sys; Protocols = 4; Transports = TCP;
    FSAL {{ Name = VFS; }}
}}
"""
    )
    log = directory / "ganesha.log"
    process = subprocess.Popen(
        ["ganesha.nfsd", "-F", "-L", str(log), "-f", str(config), "-p", str(directory / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, log, bind)
        yield export, port
    finally:
        stop(process)


@pytest.fixture
def nfs_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """nfs-ganesha on 127.0.0.1 (the guest's 10.0.2.2), exporting a temp dir."""
    with ganesha(tmp_path) as server:
        yield server


def test_nfs(tmp_path: Path, nfs_server: tuple[Path, int]) -> None:
    export, port = nfs_server
    recipe = write_recipe(
        tmp_path,
        f'target = "nfs"\nnfs = "{HOST_FROM_GUEST}:/kdump"\nnfs_version = "4.2"\n'
        f'nfs_options = ["port={port}"]\npath = "/dumps"\nnetwork = "dhcp"\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n',
        extra_modules=("virtio_net",),
    )
    cycle = crash_cycle(tmp_path, recipe, None, qemu.USER_NETWORK)
    context = cycle.console[-4000:]
    assert cycle.returncode == 0, context
    assert f"kdump: network: eth0 is {GUEST_ADDRESS}" in cycle.console, context
    dumps = list((export / "dumps").iterdir())
    assert len(dumps) == 1, dumps
    name = dumps[0].name
    assert name.startswith(f"{GUEST_ADDRESS}-") and DUMP_DIR_NAME.match(name.split("-", 1)[1])
    assert sorted(path.name for path in dumps[0].iterdir()) == [
        "collector.log",
        "kdump-target",
        "vmcore",
        "vmcore-dmesg.txt",
    ]
    assert (dumps[0] / "kdump-target").read_text() == f"nfs {HOST_FROM_GUEST}:/kdump\n"
    check_vmcore(dumps[0] / "vmcore", cycle.kernel_version, tmp_path)


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """OpenSSH's sshd in the foreground on 127.0.0.1 with its own keys; root logs in by key."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)],
            check=True,
        )
    (keys / "authorized_keys").write_bytes((keys / "client_key.pub").read_bytes())
    host_key = (keys / "host_key.pub").read_text().split()
    (tmp_path / "known_hosts").write_text(f"{HOST_FROM_GUEST} {host_key[0]} {host_key[1]}\n")
    shutil.copy(keys / "client_key", tmp_path / "client_key")
    port = free_port()
    config = keys / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {keys / 'host_key'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPidFile none\n"
    )
    # sshd's privilege separation needs this directory (the package creates it at boot).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = tmp_path / "sshd.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [shutil.which("sshd") or "sshd", "-D", "-e", "-f", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, log)
        yield tmp_path, port
    finally:
        stop(process)


def test_ssh(tmp_path: Path, ssh_server: tuple[Path, int]) -> None:
    _, port = ssh_server
    # A path the server's shell must read as one word.
    dumps = tmp_path / "ssh dumps 'x'"
    dumps.mkdir()
    recipe = write_recipe(
        tmp_path,
        f'target = "ssh"\nssh = "root@{HOST_FROM_GUEST}"\nssh_port = {port}\n'
        f'ssh_key = "client_key"\nssh_known_hosts = "known_hosts"\npath = "{dumps}"\n'
        # Static addressing here (the NFS test covers DHCP): QEMU's user network layout.
        f'network = "static"\nip = "{GUEST_ADDRESS}/24"\ngateway = "{HOST_FROM_GUEST}"\n'
        'hostname = "crashed-guest"\nfinal_action = "poweroff"\nfailure_action = "poweroff"\n',
        extra_modules=("virtio_net",),
        extra_packages=tuple(SSH_PACKAGES),
    )
    cycle = crash_cycle(tmp_path, recipe, None, qemu.USER_NETWORK)
    context = cycle.console[-4000:]
    assert cycle.returncode == 0, context
    assert f"kdump: network: eth0 is {GUEST_ADDRESS}" in cycle.console, context
    # The initrd holds the private key: only its owner reads it.
    assert (tmp_path / "capture" / "initrd.img").stat().st_mode & 0o777 == 0o600
    saved = list(dumps.iterdir())
    assert len(saved) == 1, saved
    assert saved[0].name.startswith("crashed-guest-"), saved
    assert sorted(path.name for path in saved[0].iterdir()) == [
        "kdump-target",
        "vmcore-dmesg.txt",
        "vmcore.flat",
    ]
    # Created under the server's umask (022 here, sshd's parent's) before: 0755 and 0644.
    assert modes_below(saved[0]) == {".": 0o700, "kdump-target": 0o600,
                                     "vmcore-dmesg.txt": 0o600, "vmcore.flat": 0o600}  # fmt: skip
    vmcore = restore_flat(saved[0] / "vmcore.flat", tmp_path)
    check_vmcore(vmcore, cycle.kernel_version, tmp_path)
    assert "sysrq triggered crash" in (saved[0] / "vmcore-dmesg.txt").read_text(errors="replace")


@pytest.fixture(scope="module")
def failing_capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """One capture build for both failure tests: LABEL=kdump, a short wait, a post hook."""
    directory = tmp_path_factory.mktemp("failing-capture")
    (directory / "post.sh").write_text('echo "hook: post status=$KDUMP_STATUS"\n')
    recipe = write_recipe(
        directory,
        'target = "local"\ndevice = "LABEL=kdump"\ndevice_timeout = 3\npost = ["post.sh"]\n'
        'final_action = "poweroff"\nfailure_action = "reboot"\n',
    )
    return build_capture(directory, recipe)


def test_missing_target_takes_failure_action(tmp_path: Path, failing_capture: Capture) -> None:
    disk = tmp_path / "other.img"
    harness.make_dump_disk(disk, size_mib=32, label="not-kdump")
    cycle = boot_and_crash(tmp_path, failing_capture, disk)
    context = cycle.console[-4000:]
    assert "kdump: FAILED: dump device LABEL=kdump did not appear in 3s" in cycle.console, context
    assert "hook: post status=failed" in cycle.console, context
    assert "kdump: action: reboot" in cycle.console, context
    assert "reboot: Restarting system" in cycle.console, context
    assert "kdump: dump saved" not in cycle.console
    files = harness.extract_disk(disk, tmp_path / "disk")
    assert not [path for path in files if path.name.startswith("vmcore")], files


def test_full_target_takes_failure_action(tmp_path: Path, failing_capture: Capture) -> None:
    disk = tmp_path / "tiny.img"
    # 16 MiB holds the kernel log but not the ~35 MiB dump of a 1 GiB guest: the size
    # bound (makedumpfile's dry run) refuses it before anything is written.
    harness.make_dump_disk(disk, size_mib=16, label="kdump")
    cycle = boot_and_crash(tmp_path, failing_capture, disk)
    context = cycle.console[-4000:]
    assert "kdump: FAILED: not enough space on local LABEL=kdump: the dump needs up to" in (
        cycle.console
    ), context
    assert "hook: post status=failed" in cycle.console, context
    assert "kdump: action: reboot" in cycle.console, context
    assert "reboot: Restarting system" in cycle.console, context
    assert "kdump: dump saved" not in cycle.console
    files = harness.extract_disk(disk, tmp_path / "disk")
    names = sorted(path.name for path in files)
    assert not [name for name in names if name.startswith("vmcore")], names
