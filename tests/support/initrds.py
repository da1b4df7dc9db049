"""A small initrd plan with one member of every kind, for the cpio and diff tests."""

from __future__ import annotations

from builder.image.initrd import InitrdPlan


def sample_plan() -> InitrdPlan:
    plan = InitrdPlan()
    plan.file("/init", b"#!/bin/sh\necho hi\n", 0o755)
    plan.file("/usr/lib/x/libx.so.1.0", b"\x7fELF" + bytes(range(256)) * 3)
    plan.symlink("/usr/lib/x/libx.so.1", "libx.so.1.0")
    plan.symlink("/bin/sh", "/bin/busybox")
    plan.file("/bin/busybox", b"busybox", 0o755)
    plan.chardev("/dev/console", 5, 1)
    plan.chardev("/dev/null", 1, 3, 0o666)
    return plan
