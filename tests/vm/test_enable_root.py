"""README's mmdebstrap line, run exactly as written: a Debian 12 tree with the .deb of this
checkout installed, armed offline by `kdump-build enable --root` in mmdebstrap's
customize hook.

No QEMU here (the tree is not booted): it needs mmdebstrap, Debian's archive and root,
and takes minutes, so it runs with the VM tests. The tree's OWN kdump-build (Debian's
python3 and libraries, in a chroot) then judges the capture the build host made: the
same check the service makes at boot (`captures.staleness`), reached through the
kernel hook's command, must find it current, so the first boot only loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.vm

HOOK = "--customize-hook='kdump-build enable --root \"$1\" --ram 2G'"


def documented_command() -> str:
    """The mmdebstrap command of README's "Arm an image at build time", as written."""
    text = (REPO / "README.md").read_text()
    blocks: list[str] = re.findall(r"```sh\n(mmdebstrap .*?)```", text, re.DOTALL)
    assert len(blocks) == 1 and HOOK in blocks[0], blocks
    return blocks[0]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("enable-root")
    built = subprocess.run([str(REPO / "scripts" / "build-deb"), str(work)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr
    # The build host's installed kdump-build: this checkout's, the same version as the .deb.
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    run = subprocess.run(["bash", "-ec", documented_command()], cwd=work, env=environment,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (work / "mmdebstrap.log").write_text(run.stdout + run.stderr)
    return work / "debian-armed"


def chroot(tree: Path, *command: str) -> str:
    result = subprocess.run(["chroot", str(tree), *command], capture_output=True, text=True,
                            check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})  # fmt: skip
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout


def test_the_documented_line_arms_the_tree(tree: Path) -> None:
    (version,) = [path.name for path in (tree / "lib/modules").iterdir()]
    capture = tree / "var/lib/kdump-build" / version
    record = json.loads((capture / "host.json").read_text())
    assert record["inputs"]["recipe"] == "/etc/kdump-build/recipe.toml"
    assert record["inputs"]["kernel_image"] == f"/boot/vmlinuz-{version}"
    assert (capture / "vmlinuz").read_bytes() == (tree / f"boot/vmlinuz-{version}").read_bytes()
    recipe = (tree / "etc/kdump-build/recipe.toml").read_text()
    assert 'root = "/"' in recipe and 'device = "LABEL=debian"' in recipe
    assert str(tree) not in recipe and str(REPO) not in recipe
    assert "crashkernel=" in (tree / "etc/default/grub.d/kdump-build.cfg").read_text()
    # The tree's own systemctl (offline) sees the unit switched on by the wants link.
    assert chroot(tree, "systemctl", "is-enabled", "kdump-build.service").strip() == "enabled"


def test_the_trees_own_kdump_build_finds_the_capture_current(tree: Path) -> None:
    (version,) = [path.name for path in (tree / "lib/modules").iterdir()]
    before = (tree / "var/lib/kdump-build" / version / "host.json").read_bytes()
    said = chroot(tree, "kdump-build", "kernel-installed", version)
    assert said.strip() == f"kdump-build: /var/lib/kdump-build/{version} is up to date"
    assert (tree / "var/lib/kdump-build" / version / "host.json").read_bytes() == before


@pytest.fixture(scope="module", autouse=True)
def _remove_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield None
    # A whole Debian tree: not left behind for pytest's tmp retention.
    for left in tmp_path_factory.getbasetemp().glob("enable-root*/debian-armed"):
        shutil.rmtree(left, ignore_errors=True)
