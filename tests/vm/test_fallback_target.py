"""A fallback dump target on real parts: the NFS server does not answer, the local disk
(the recipe's [[dump.fallback]]) saves the dump, and the dump says which target saved it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import qemu
from tests.vm import harness
from tests.vm.test_dump_targets import (
    HOST_FROM_GUEST,
    Cycle,
    check_vmcore,
    crash_cycle,
    free_port,
    write_recipe,
)

pytestmark = pytest.mark.vm


def test_nfs_unreachable_then_the_local_disk_saves(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: the NFS mount is refused
    recipe = write_recipe(
        tmp_path,
        f'target = "nfs"\nnfs = "{HOST_FROM_GUEST}:/kdump"\nnfs_options = ["port={closed}"]\n'
        'path = "/dumps"\nnetwork = "dhcp"\ndevice_timeout = 10\n'
        'final_action = "poweroff"\nfailure_action = "poweroff"\n'
        '[[fallback]]\ntarget = "local"\ndevice = "LABEL=kdump"\npath = "/crash"\n',
        extra_modules=("virtio_net",),
    )
    assert "[[dump.fallback]]" in recipe.read_text()
    disk = tmp_path / "dump.img"
    harness.make_dump_disk(disk)
    cycle = crash_cycle(tmp_path, recipe, disk, qemu.USER_NETWORK)
    context = cycle.console[-4000:]
    assert cycle.returncode == 0, context
    assert f"kdump: dump target 1 of 2: nfs {HOST_FROM_GUEST}:/kdump" in cycle.console, context
    assert f"kdump: FAILED: cannot mount {HOST_FROM_GUEST}:/kdump" in cycle.console, context
    assert "kdump: trying the next dump target" in cycle.console, context
    check_saved_by_the_local_fallback(cycle, disk, tmp_path)


def check_saved_by_the_local_fallback(cycle: Cycle, disk: Path, scratch: Path) -> None:
    """The second target, the local disk LABEL=kdump, saved the one dump of `cycle`."""
    context = cycle.console[-4000:]
    assert "kdump: saved with dump target 2 of 2: local LABEL=kdump" in cycle.console, context
    files = harness.extract_disk(disk, scratch / "disk")
    vmcores = [path for path in files if path.name == "vmcore"]
    assert len(vmcores) == 1, files
    assert (vmcores[0].parent / "kdump-target").read_text() == "local LABEL=kdump\n"
    check_vmcore(vmcores[0], cycle.kernel_version, scratch)
