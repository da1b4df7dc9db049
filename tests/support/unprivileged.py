"""An unprivileged user (`nobody`) acting against root's commands, for the attack tests.

The tests run as root; the attacker's steps run in a child that dropped to
nobody:nogroup with no supplementary groups, in directories nobody can reach
(`shared_directory`: world-writable like a careless /var/crash, not sticky).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY_UID = 65534
NOGROUP_GID = 65534


def drop_privileges() -> None:
    """In a child before exec: become nobody:nogroup with no other groups."""
    os.setgroups([])
    os.setgid(NOGROUP_GID)
    os.setuid(NOBODY_UID)


def as_nobody(code: str, *arguments: str) -> str:
    """Run Python `code` as nobody (sys.argv[1:] = `arguments`); its stdout. Fails loudly."""
    result = subprocess.run(
        # The system Python: the test runner's own may sit where nobody cannot read.
        ["/usr/bin/python3", "-I", "-c", code, *arguments],
        preexec_fn=drop_privileges,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert result.returncode == 0, f"the attacker's step failed: {result.stderr}"
    return result.stdout


@pytest.fixture
def shared() -> Iterator[Path]:
    """A fresh directory every user can write (mode 0777, no sticky bit: a careless
    /var/crash), outside root's private temporary tree (which nobody cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix="kdump-build-shared-", dir="/tmp"))
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path)
