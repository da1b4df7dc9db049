"""Run in a guest, chrooted into the host root: `enable` for a machine whose root is ROOT.

    python -m tests.vm.enable_guest ROOT

ROOT holds only what the probe asks before the dump filesystem (a kernel image with
its modules directory, makedumpfile, busybox); its var/crash is whatever the guest
mounted there. The guest's own /proc and /sys are read, as on a real machine. Prints
`enable: <line>` for each line enable says and `enable refused: <message>` for the
one-line error the CLI would print.
"""

from __future__ import annotations

import sys
from pathlib import Path

from builder.errors import KdumpBuildError
from builder.host.enable import Effects, enable
from builder.host.paths import HostPaths


def main(root: str) -> int:
    try:
        enable(None, lambda line: print(f"enable: {line}"), HostPaths(Path(root)),
               Effects(systemctl=False, update_grub=False))  # fmt: skip
    except KdumpBuildError as error:
        print(f"enable refused: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
