"""Dump targets: where a capture saves the dump.

The registry: `DumpTarget` names each target and `kind` gives its
implementation. Adding a target is one module beside this one, one line in
`DumpTarget`, one in `_KINDS`, and its branch in the capture `/init`'s
dispatch (builder/image/runtime/init.sh).
"""

from __future__ import annotations

from enum import StrEnum

from builder.targets.base import TargetKind
from builder.targets.local import LocalTarget
from builder.targets.nfs import NfsTarget
from builder.targets.raw import RawTarget
from builder.targets.ssh import SshTarget


class DumpTarget(StrEnum):
    """`dump.target`."""

    LOCAL = "local"
    RAW = "raw"
    NFS = "nfs"
    SSH = "ssh"

    @property
    def kind(self) -> TargetKind:
        """The target's implementation.

        >>> DumpTarget.NFS.kind.summary
        'an NFS export'
        """
        return _KINDS[self]


_KINDS: dict[DumpTarget, TargetKind] = {
    DumpTarget.LOCAL: LocalTarget(),
    DumpTarget.RAW: RawTarget(),
    DumpTarget.NFS: NfsTarget(),
    DumpTarget.SSH: SshTarget(),
}
