"""Adding a dump target is two files: a toy target, added to a copy of builder/, builds and
its shell part runs through /init's dispatch.

The toy (tests/unit/targets/toy/) saves into a tmpfs directory. Its two files
are copied into the copy's builder/targets/ and nothing else changes; the build
runs the copied package, and the capture side's `save_dump` (taken from the
built /init) sources the toy's shell part by name, in a chroot of the built
initrd with its own busybox.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from builder.binfmt.cpio import read_initrd
from tests.support.paths import REPO

TOY = Path(__file__).parent / "toy"


def _copy_with_toy(destination: Path) -> Path:
    tree = destination / "builder"
    shutil.copytree(REPO / "builder", tree, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("toy.py", "toy.sh"):
        shutil.copy(TOY / name, tree / "targets" / name)
    return tree


def _toy_recipe(path: Path) -> Path:
    text = (REPO / "recipes" / "qemu-x86_64.toml").read_text()
    dump = '[dump]\ntarget = "toy"\ndirectory = "/run/toy"\ncollector = "makedumpfile"\n'
    recipe = path / "toy.toml"
    recipe.write_text(re.sub(r"\[dump\]\n(.*\n)*?(?=\[|\Z)", dump + "\n", text))
    return recipe


def _extract(initrd: bytes, root: Path) -> None:
    for entry in read_initrd(initrd):
        path = root / entry.path.lstrip("/")
        if stat.S_ISDIR(entry.mode):
            path.mkdir(parents=True, exist_ok=True)
        elif stat.S_ISLNK(entry.mode):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(entry.data.decode())
        elif stat.S_ISREG(entry.mode):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data)
            path.chmod(entry.mode & 0o777)


# Run in the chroot: the stubs stand in for what needs a capture kernel (a real
# mount, /proc/vmcore behind the collector); the dispatch and the part are the build's.
DISPATCH = """
log() { echo "kdump: $*"; }
fail() { echo "FAILED: $*"; exit 1; }
mount() { echo "mount $*" >> /run/mounts; }
. /etc/kdump/kdump.conf
collect_stream() { echo toy-vmcore; }
sed -n '/^save_dump() {/,/^}/p' /init > /tmp/save_dump.sh
. /tmp/save_dump.sh
target_1
save_dump
"""


def test_a_toy_target_in_its_own_two_files_builds_and_is_dispatched(tmp_path: Path) -> None:
    tree = _copy_with_toy(tmp_path)
    output = tmp_path / "out"
    build = subprocess.run(
        [sys.executable, "-c", "from builder.cli import main; main()",
         # The toy target saves to RAM: no driver reaches it, so no reach check holds.
         str(_toy_recipe(tmp_path)), "-o", str(output), "--ignore-reach"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tree.parent)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    assert f"-> {output}" in build.stdout
    root = tmp_path / "root"
    _extract((output / "initrd.img").read_bytes(), root)
    assert (root / "etc/kdump/targets/toy.sh").read_bytes() == (TOY / "toy.sh").read_bytes()
    assert not list((root / "etc/kdump/targets").glob("local*"))  # only the targets it uses
    config = (root / "etc/kdump/kdump.conf").read_text()
    assert "KDUMP_TARGET=toy\n" in config and "KDUMP_TOY_DIRECTORY=/run/toy\n" in config
    (root / "run").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    run = subprocess.run(
        ["chroot", str(root), "/bin/busybox", "sh", "-c", DISPATCH],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == "kdump: dump saved to /run/toy/vmcore.flat\n", run.stdout + run.stderr
    assert (root / "run/toy/vmcore.flat").read_text() == "toy-vmcore\n"
    assert (root / "run/mounts").read_text() == "mount -t tmpfs tmpfs /run/toy\n"
