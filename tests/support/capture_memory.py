"""Why a capture failed, read from the console: did it run out of memory inside its reservation?

A "too small" check must not pass on any missing dump (a refused `kexec -p`, a
timeout, a hang elsewhere). `out_of_memory(console, reserved)` asserts that the
capture kernel booted (its banner after the crashed kernel's), with at most the
reserved memory (its "Memory: .../NK available" line), and that it then ran
out of memory: the console has the kernel's OOM report or its initramfs unpack
failure. It returns that line. bench/ uses `memory_reason` to name a trial's
failure the same way.
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


def capture_part(console: str) -> str:
    """The console from the capture kernel's banner on ('' when it never booted)."""
    banners = [match.start() for match in re.finditer(r"Linux version ", console)]
    return console[banners[1] :] if len(banners) > 1 else ""


def memory_reason(console: str) -> str:
    """The capture kernel's first line saying memory ran out ('' when there is none)."""
    found = MEMORY_REASONS.search(capture_part(console))
    return found.group(0).strip() if found else ""


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
