"""Differences between two initrds."""

from __future__ import annotations

from builder.binfmt.cpio import read_initrd, write_cpio
from builder.image.diff import ChangeStatus, diff_initrds
from builder.image.initrd import InitrdPlan
from tests.support.initrds import sample_plan


def test_diff_added_removed_changed() -> None:
    before = read_initrd(write_cpio(sample_plan().members()))
    plan = sample_plan()
    plan.file("/etc/new", b"new")
    after_plan = InitrdPlan()
    for member in plan.members():
        if member.path == "/init":
            after_plan.file("/init", b"#!/bin/sh\necho bye\n", 0o700)
        elif member.path != "/bin/busybox":
            after_plan.add(member)
    changes = diff_initrds(before, read_initrd(write_cpio(after_plan.members())))
    summary = {change.path: (change.status, change.details()) for change in changes}
    assert summary == {
        "/bin/busybox": (ChangeStatus.REMOVED, []),
        "/etc": (ChangeStatus.ADDED, []),
        "/etc/new": (ChangeStatus.ADDED, []),
        "/init": (ChangeStatus.CHANGED, ["mode 100755 -> 100700", "size 18 -> 19"]),
    }
