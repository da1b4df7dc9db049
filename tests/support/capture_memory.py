"""Why a capture failed, read from the console: was its reservation too small?

A "too small" check must not pass on any missing dump (a `kexec -p` refused
for another reason, a timeout, a hang elsewhere). `memory_failure(console,
reserved)` asserts one of the two ways memory runs short, and returns the line
that shows it:

- the main kernel reserved exactly `reserved` bytes and kexec-tools found no
  room there for the capture's segments ("Could not find a free area of
  memory of 0x... bytes", then "locate_hole failed"): the capture does not
  even load;
- or the capture kernel booted (its banner after the crashed kernel's) with
  at most the reserved memory (its "Memory: .../NK available" line) and ran
  out of memory there: the kernel's OOM report or its initramfs unpack failure.

bench/ uses `memory_reason` to name a trial's failure the same way.
"""

from __future__ import annotations

import re

# What the kernel prints when memory runs out: the OOM killer (mm/oom_kill.c: "...
# invoked oom-killer", "Out of memory: Killed process", "oom-kill:constraint=..."),
# its panic when nothing can be killed, an allocation that failed loudly
# (mm/page_alloc.c warn_alloc: "page allocation failure"), and the initramfs
# that did not fit (init/initramfs.c: "Initramfs unpacking failed: ...").
MEMORY_REASONS = re.compile(
    r"^.*(?:invoked oom-killer|Out of memory|oom-kill:|page allocation failure"
    r"|Initramfs unpacking failed|System is deadlocked on memory).*$",
    re.MULTILINE,
)
# The capture kernel's memory once booted (mm/mm_init.c mem_init_print_info).
AVAILABLE = re.compile(r"Memory: \d+K/(\d+)K available")
# kexec-tools' placement of a segment failing in the crash region (kexec/kexec.c locate_hole).
NO_ROOM = re.compile(
    r"^Could not find a free area of memory of 0x[0-9a-f]+ bytes\.*$", re.MULTILINE
)
# What tests/vm/harness.py's main side prints before `kexec -p`: /sys/kernel/kexec_crash_size.
REGION = re.compile(r"^main: crash region size (\d+)$", re.MULTILINE)


def capture_part(console: str) -> str:
    """The console from the capture kernel's banner on ('' when it never booted)."""
    banners = [match.start() for match in re.finditer(r"Linux version ", console)]
    return console[banners[1] :] if len(banners) > 1 else ""


def memory_reason(console: str) -> str:
    """The capture kernel's first line saying memory ran out ('' when there is none)."""
    found = MEMORY_REASONS.search(capture_part(console))
    return found.group(0).strip() if found else ""


def memory_failure(console: str, reserved: int) -> str:
    """Assert the capture failed because `reserved` bytes are too few for it (it does not
    load there, or it booted there and ran out of memory); the console line that says so."""
    context = console[-4000:]
    region = REGION.search(console)
    assert region and int(region.group(1)) == reserved, (region, reserved, context)
    no_room = NO_ROOM.search(console)
    if no_room and "locate_hole failed" in console and "main: kexec -p failed" in console:
        return no_room.group(0)
    assert "main: kexec_crash_loaded=1" in console, (
        f"kexec -p failed for another reason:\n{context}"
    )
    return out_of_memory(console, reserved)


def out_of_memory(console: str, reserved: int) -> str:
    """Assert the capture booted inside a reservation of `reserved` bytes and ran out of
    memory there; the console line that says so."""
    captured = capture_part(console)
    context = console[-4000:]
    assert captured, f"the capture kernel never booted:\n{context}"
    available = AVAILABLE.search(captured)
    assert available, f"the capture kernel did not report its memory:\n{context}"
    assert int(available.group(1)) * 1024 <= reserved, (available.group(0), reserved)
    reason = memory_reason(console)
    assert reason, f"the capture failed without running out of memory:\n{context}"
    assert "kdump: dump saved" not in captured, context
    return reason
