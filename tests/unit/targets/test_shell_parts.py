"""Every dump target's shell part parses in the initrd's shell and defines `save_to_target`,
the one name /init calls after sourcing it; and /init itself names no target."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from builder.image.runtime import init_script
from builder.targets import target_kinds


@pytest.mark.parametrize("name", [str(kind) for kind in target_kinds()])
def test_each_shell_part_defines_save_to_target(busybox: Path, tmp_path: Path, name: str) -> None:
    (kind,) = (kind for kind in target_kinds() if str(kind) == name)
    part = tmp_path / f"{name}.sh"
    part.write_bytes(kind.shell_part())
    result = subprocess.run(
        [str(busybox), "sh", "-c", f'. "{part}" && type save_to_target'],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("save_to_target is a function"), result.stdout


def test_init_sources_the_part_it_is_given(busybox: Path, tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.write_bytes(init_script())
    syntax = subprocess.run([str(busybox), "sh", "-n", str(init)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    text = init_script().decode()
    assert '. "$KDUMP_TARGET_SHELL"' in text and "save_to_target" in text
    named = [str(kind) for kind in target_kinds() if re.search(rf"\b{kind}\b", text)]
    assert named == []
