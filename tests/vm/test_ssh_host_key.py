"""The ssh target checks the server's host key (issue 22, item 4): a server that
presents another key than the capture knows gets nothing, and the capture saves to its
fallback target. One crash cycle (~40 s under TCG)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import qemu
from tests.vm import harness
from tests.vm.test_dump_targets import (
    HOST_FROM_GUEST,
    SSH_PACKAGES,
    crash_cycle,
    ssh_server,
    write_recipe,
)
from tests.vm.test_fallback_target import check_saved_by_the_local_fallback

pytestmark = pytest.mark.vm
__all__ = ["ssh_server"]  # the fixture


def test_a_server_with_another_host_key_gets_nothing_and_the_fallback_saves(
    tmp_path: Path, ssh_server: tuple[Path, int]
) -> None:
    _, port = ssh_server
    # The key the capture expects: not the one the server (the fixture's sshd) presents.
    impostor = tmp_path / "expected_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)  # fmt: skip
    kind, key = (tmp_path / "expected_host_key.pub").read_text().split()[:2]
    (tmp_path / "expected_known_hosts").write_text(f"[{HOST_FROM_GUEST}]:{port} {kind} {key}\n")
    dumps = tmp_path / "ssh-dumps"
    dumps.mkdir()
    recipe = write_recipe(
        tmp_path,
        f'target = "ssh"\nssh = "root@{HOST_FROM_GUEST}"\nssh_port = {port}\n'
        f'ssh_key = "client_key"\nssh_known_hosts = "expected_known_hosts"\npath = "{dumps}"\n'
        'network = "dhcp"\ndevice_timeout = 10\nconnect_timeout = 20\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n'
        '[[fallback]]\ntarget = "local"\ndevice = "LABEL=kdump"\npath = "/crash"\n',
        extra_modules=("virtio_net",),
        extra_packages=tuple(SSH_PACKAGES),
    )
    disk = tmp_path / "dump.img"
    harness.make_dump_disk(disk)
    cycle = crash_cycle(tmp_path, recipe, disk, qemu.USER_NETWORK)
    context = cycle.console[-4000:]
    assert cycle.returncode == 0, context
    assert f"kdump: dump target 1 of 2: ssh root@{HOST_FROM_GUEST}" in cycle.console, context
    # dbclient's own reason, not only a missing dump.
    assert f"{kind} host key mismatch for {HOST_FROM_GUEST} !" in cycle.console, context
    assert f"kdump: FAILED: cannot create {dumps}/" in cycle.console, context
    assert list(dumps.iterdir()) == []
    check_saved_by_the_local_fallback(cycle, disk, tmp_path)
