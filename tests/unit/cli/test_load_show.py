"""`load --show` is a dry run; `load --verbose` prints the same table and loads (issue 24,
item 8). On the code before, `--show` ("Print the planned segments") called kexec_load.

This machine has no crash region, so the live system's readers are pointed at a
captured QEMU guest (tests/data/sysfs) and the two syscalls are recorded instead
of made; the planning, the checks and the printing are the product's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.arch import Arch
from builder.cli import kexec as cli
from builder.image.outputs import write_outputs
from builder.image.pipeline import BuildResult
from builder.kexec.layout import inputs
from builder.kexec.layout.core import Layout

SYSFS = Path(__file__).resolve().parents[2] / "data" / "sysfs" / "qemu-1g-crashkernel-192m"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch, default_build: BuildResult) -> list[Layout]:
    from builder.host import readiness
    from builder.kexec import state, syscalls

    captured = inputs.read_iomem(SYSFS / "proc" / "iomem")
    monkeypatch.setattr(inputs, "read_iomem", lambda path: captured)
    real_info = inputs.read_crash_info_for
    monkeypatch.setattr(inputs, "read_crash_info_for",
                        lambda root, memory, arch: real_info(SYSFS, memory, arch))  # fmt: skip
    real_firmware = inputs.read_firmware
    monkeypatch.setattr(inputs, "read_firmware", lambda root: real_firmware(SYSFS))
    monkeypatch.setattr(syscalls, "require_this_machine", lambda arch: None)
    monkeypatch.setattr(syscalls, "lockdown_mode", lambda: None)
    monkeypatch.setattr(readiness, "check_ready", lambda outdir, segments: None)
    monkeypatch.setattr(state, "record_load", lambda record: None)
    made: list[Layout] = []
    monkeypatch.setattr(syscalls, "kexec_load", made.append)
    return made


def _load(outdir: Path, *, show: bool, verbose: bool = False) -> None:
    options = {"show": show, **({"verbose": verbose} if verbose else {})}
    cli.load(outdir, method="segments", arch=Arch.X86_64.value, backup=None,
             print_kexec_command=False, testing_corrupt_segment=None, **options)  # fmt: skip


def test_show_plans_and_prints_but_loads_nothing(
    loads: list[Layout], default_build: BuildResult, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    write_outputs(default_build, tmp_path / "out")
    _load(tmp_path / "out", show=True)
    printed = capsys.readouterr().out
    assert "purgatory" in printed and "cmdline " in printed
    assert loads == []


def test_verbose_prints_the_same_table_and_loads(
    loads: list[Layout], default_build: BuildResult, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    write_outputs(default_build, tmp_path / "out")
    _load(tmp_path / "out", show=False, verbose=True)
    printed = capsys.readouterr().out
    assert "purgatory" in printed and printed.rstrip().splitlines()[-1].startswith("loaded ")
    assert len(loads) == 1
