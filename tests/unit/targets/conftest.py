"""What the target tests share: Debian's static busybox, the initrd's shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image.fetch import fetch_packages
from builder.image.packages import PackageRoot


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    packages = fetch_packages(["busybox-static"], "x86_64")
    path = tmp_path_factory.mktemp("busybox") / "busybox"
    path.write_bytes(PackageRoot([package.path for package in packages]).read_bytes("/bin/busybox"))
    path.chmod(0o755)
    return path
