"""The QEMU command the VM tests boot with: one host thread for a multi-CPU guest."""

from __future__ import annotations

from pathlib import Path

from tests.support.qemu import qemu_command


def _accel(cpus: int) -> str:
    command = qemu_command(Path("vmlinuz"), Path("initrd"), "console=ttyS0", memory="1G",
                           cpus=cpus, log=Path("console.log"))  # fmt: skip
    assert command.count("-accel") == 1, command
    return command[command.index("-accel") + 1]


def test_a_multi_cpu_guest_runs_its_cpus_in_one_host_thread() -> None:
    # A thread per CPU let a CPU run a text-poke int3 after the patching was over
    # (CI, Debian 14's 7.2.12, two CPUs): see tcg_accel.
    assert _accel(2) == "tcg,thread=single"
    assert _accel(4) == "tcg,thread=single"


def test_a_one_cpu_guest_keeps_the_command_the_stored_measurements_name() -> None:
    assert _accel(1) == "tcg"
