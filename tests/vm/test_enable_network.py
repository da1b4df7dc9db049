"""`enable --target nfs --to SERVER` end to end (issue 22, item 3 at enable): the
recipe enable writes from a machine's own ifupdown file, its card named by MAC and its
driver chosen from /sys, takes a real crash's dump to an NFS server.

The machine is a root of real Debian packages (tests/unit/host/test_enable.py's) whose
/etc/network/interfaces configures eth0 by DHCP, and whose eth0 has the MAC address of
this build host's own network card: host-only selection reads the build host's /sys
(as `enable` on a machine reads its own), and the guest's card gets that MAC address
(QEMU's user network is private, nothing clashes). enable builds the capture as on a
machine; the guest boots it, crashes, and the capture finds its card by MAC, takes
DHCP from QEMU and mounts the export. The export is nfs-ganesha on the host's
127.0.0.1:2049, the NFS port, because enable writes no port option (the server a
machine dumps to listens there). The vmcore is read back with makedumpfile.

`enable --target ssh --to USER@ADDRESS` on the same machine root, with no --ssh-key:
enable makes the capture its own key and prints its authorized_keys line, which the
test adds to the server (test_dump_targets' sshd on the host), as the admin would. The
server's host key comes from root's known_hosts in the machine, the default: checked
at the dump. The flattened dump is restored and read with makedumpfile --dump-dmesg.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.host.enable import enable
from builder.host.netrecipe import network_request
from builder.host.paths import HostPaths
from builder.host.probe import installed_kernels
from builder.image.fetch import fetch_packages
from builder.image.hostonly import permanent_mac
from builder.recipe.dump import EnableRequest
from tests.unit.host.test_enable import OFF, facts_for, sysroot
from tests.vm import harness
from tests.vm.test_dump_targets import (
    DUMP_DIR_NAME,
    GUEST_ADDRESS,
    HOST_FROM_GUEST,
    SSH_PACKAGES,
    Capture,
    Cycle,
    boot_and_crash,
    check_vmcore,
    ganesha,
    restore_flat,
    ssh_server,
)

pytestmark = pytest.mark.vm
# The fixtures: a machine root of real Debian packages (module), an sshd on the host.
__all__ = ["ssh_server", "sysroot"]

NFS_PORT = 2049
# The QEMU device for the driver of the build host's card: the guest's card must be
# one the capture has the driver of.
QEMU_DEVICE = {"virtio_net": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e"}


def host_card() -> tuple[str, str]:
    """This build host's first network card with a driver: its MAC and the driver's name
    (a module, or built into this host's kernel: then host-only selection offers the
    name to the capture kernel, whose Debian build has it as a module)."""
    for card in sorted(Path("/sys/class/net").iterdir()):
        driver = card / "device/driver"
        if driver.exists():
            return permanent_mac(card), Path(os.path.realpath(driver)).name
    raise AssertionError("this build host has no network card with a driver")


def machine_with_card(sysroot: Path) -> tuple[HostPaths, tuple[str, ...]]:
    """The machine's eth0, configured by DHCP in its ifupdown file, with the MAC of this
    build host's card; and the QEMU arguments of the guest's card with that MAC."""
    mac, driver = host_card()
    assert driver in QEMU_DEVICE, f"no QEMU device known for {driver}"
    (sysroot / "etc/network").mkdir(parents=True, exist_ok=True)
    (sysroot / "etc/network/interfaces").write_text("auto eth0\niface eth0 inet dhcp\n")
    (sysroot / "sys/class/net/eth0").mkdir(parents=True, exist_ok=True)
    (sysroot / "sys/class/net/eth0/address").write_text(mac + "\n")
    card = ("-netdev", "user,id=n0", "-device", f"{QEMU_DEVICE[driver]},netdev=n0,mac={mac}")
    return HostPaths(sysroot), card


def crash_with_capture(tmp_path: Path, paths: HostPaths, card: tuple[str, ...]) -> Cycle:
    """Boot the machine's kernel with the capture enable built, crash it."""
    (version,) = installed_kernels(paths)
    capture_dir = paths.capture(version)
    main_initrd = tmp_path / "main-initrd.img"
    main_initrd.write_bytes(harness.build_main_initrd(capture_dir))
    return boot_and_crash(tmp_path, Capture(capture_dir, main_initrd, version), None, card)


def test_enable_nfs_recipe_takes_the_dump(tmp_path: Path, sysroot: Path) -> None:
    paths, card = machine_with_card(sysroot)
    request = network_request("nfs", EnableRequest(f"{HOST_FROM_GUEST}:/kdump", path="/dumps"),
                              interface="eth0")  # fmt: skip
    said: list[str] = []
    enable(None, said.append, paths, OFF, facts_for(sysroot), request)
    assert f'interface_mac = "{host_card()[0]}"' in paths.recipe.read_text()
    with ganesha(tmp_path, port=NFS_PORT) as (export, _):
        cycle = crash_with_capture(tmp_path, paths, card)
    context = cycle.console[-4000:]
    assert f"kdump: network: eth0 is {GUEST_ADDRESS}" in cycle.console, context
    dumps = list((export / "dumps").iterdir()) if (export / "dumps").is_dir() else []
    assert len(dumps) == 1, context
    assert DUMP_DIR_NAME.match(dumps[0].name.split("-", 1)[1])
    assert (dumps[0] / "kdump-target").read_text() == f"nfs {HOST_FROM_GUEST}:/kdump\n"
    check_vmcore(dumps[0] / "vmcore", cycle.kernel_version, tmp_path)


def test_enable_ssh_recipe_with_its_own_key_takes_the_dump(
    tmp_path: Path, sysroot: Path, ssh_server: tuple[Path, int]
) -> None:
    server_dir, port = ssh_server
    for package in fetch_packages(list(SSH_PACKAGES), "x86_64"):  # dropbear's dbclient
        subprocess.run(["dpkg-deb", "-x", str(package.path), str(sysroot)], check=True)
    paths, card = machine_with_card(sysroot)
    # Root of the machine knows the server's host key (ssh files a port as [ADDRESS]:PORT).
    host_key = (server_dir / "keys/host_key.pub").read_text().split()[:2]
    (sysroot / "root/.ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
    (sysroot / "root/.ssh/known_hosts").write_text(
        f"[{HOST_FROM_GUEST}]:{port} {' '.join(host_key)}\n"
    )
    dumps = tmp_path / "ssh-dumps"
    dumps.mkdir()
    enable_request = EnableRequest(f"root@{HOST_FROM_GUEST}", path=str(dumps), port=port)
    said: list[str] = []
    enable(None, said.append, paths, OFF, facts_for(sysroot),
           network_request("ssh", enable_request, interface="eth0"))  # fmt: skip
    own_key = paths.config_dir / "kdump_id_ed25519"
    assert f"ssh key: made {own_key} " in said[0], said
    (public,) = [line.strip() for line in said if line.startswith("  ssh-ed25519 ")]
    # The admin's step enable asks for: the line in the server's authorized_keys, alone.
    (server_dir / "keys/authorized_keys").write_text(public + "\n")
    cycle = crash_with_capture(tmp_path, paths, card)
    context = cycle.console[-4000:]
    assert cycle.returncode == 0, context
    assert f"kdump: network: eth0 is {GUEST_ADDRESS}" in cycle.console, context
    saved = list(dumps.iterdir())
    assert len(saved) == 1, context
    assert sorted(path.name for path in saved[0].iterdir()) == [
        "kdump-target", "vmcore-dmesg.txt", "vmcore.flat"]  # fmt: skip
    vmcore = restore_flat(saved[0] / "vmcore.flat", tmp_path)
    check_vmcore(vmcore, cycle.kernel_version, tmp_path)
