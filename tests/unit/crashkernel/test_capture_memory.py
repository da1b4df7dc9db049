"""The too-small checks' reading of a console (tests/support/capture_memory.py), on consoles
shaped like the ones the VM tests saw: it names the memory reason or fails."""

from __future__ import annotations

import pytest

from builder.units import MiB
from tests.support.capture_memory import memory_failure, memory_reason

MAIN = "[    0.000000] Linux version 6.1.0-57-amd64 (main)\nmain: crash region size {size}\n"
NO_ROOM = (
    "Could not find a free area of memory of 0x3f98000 bytes...\n"
    "locate_hole failed\nmain: kexec -p failed\n"
)
BOOTED = (
    "main: kexec_crash_loaded=1\nsysrq: Trigger a crash\n"
    "[    0.000000] Linux version 6.1.0-57-amd64 (capture)\n"
    "[    0.000000] Memory: 35288K/98284K available (14343K kernel code)\n"
)
OOM = "[    8.646650] kworker/u2:0 invoked oom-killer: gfp_mask=0x140cca, order=0\n"


def test_no_room_for_the_capture_is_the_memory_reason() -> None:
    console = MAIN.format(size=64 * MiB) + NO_ROOM
    assert memory_failure(console, 64 * MiB) == (
        "Could not find a free area of memory of 0x3f98000 bytes..."
    )


def test_a_capture_out_of_memory_inside_the_reservation() -> None:
    console = MAIN.format(size=96 * MiB) + BOOTED + OOM
    assert memory_reason(console) == OOM.strip()
    assert memory_failure(console, 96 * MiB) == OOM.strip()


@pytest.mark.parametrize(
    ("console", "reserved", "message"),
    [
        # kexec -p failing for another reason (a file it cannot open)
        (MAIN.format(size=56 * MiB) + "Cannot open `/capture/initrd.img.missing'\n"
         "main: kexec -p failed\n", 56 * MiB, "failed for another reason"),
        # another reservation than the one asked
        (MAIN.format(size=64 * MiB) + NO_ROOM, 56 * MiB, "crash region size"),
        # booted, but no memory reason: a hang or another failure
        (MAIN.format(size=96 * MiB) + BOOTED + "kdump: FAILED: no dump device\n", 96 * MiB,
         "without running out of memory"),
        # booted with more memory than reserved
        (MAIN.format(size=64 * MiB) + BOOTED + OOM, 64 * MiB, "available"),
        # the capture never booted
        (MAIN.format(size=96 * MiB) + "main: kexec_crash_loaded=1\n", 96 * MiB, "never booted"),
    ],
)  # fmt: skip
def test_any_other_failure_fails_the_check(console: str, reserved: int, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        memory_failure(console, reserved)
