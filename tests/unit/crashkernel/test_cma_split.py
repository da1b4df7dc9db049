"""`crashkernel=SIZE,cma`: the fit model's split into a small fixed part plus CMA.

The fixed region must hold what kexec_load loads (kernel at init_size, packed
initrd, the small segments); the rest of the capture's need may come from the
`,cma` ranges, which the main system keeps using for movable pages. Only where
the kernel reserves it (x86_64 from 6.17) and our loaders pass its ranges on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.crashkernel.fit import LOADED_SLACK, fit, loaded_need
from builder.crashkernel.profile import capture_profile
from builder.crashkernel.reservation import reservation
from builder.crashkernel_syntax import parse_crashkernel_args
from builder.image.pipeline import BuildResult
from builder.units import GiB, MiB
from tests.conftest import run_cli
from tests.support.paths import REPO
from tests.support.recipes import recipe_text

RAMS = [1 * GiB, 4 * GiB, 64 * GiB]
NEW = "7.2.12+deb14-amd64"  # Debian 14's kernel: reserves ,cma (6.17+)
OLD = "6.12.57+deb13-amd64"


def _profile(result: BuildResult):  # type: ignore[no-untyped-def]
    return capture_profile(
        result.recipe, result.kernel, result.cmdline, result.members, result.initrd
    )


def test_the_split_keeps_the_loaded_capture_fixed_and_saves_the_rest(
    default_build: BuildResult,
) -> None:
    profile = _profile(default_build)
    report = fit("192M", RAMS, profile, arch="x86_64", kernel=NEW)
    assert report.recommended is not None and report.recommended_cma is not None
    config = parse_crashkernel_args(report.recommended_cma)
    assert config.main is not None and config.cma is not None
    fixed, cma = config.main.size, config.cma.size  # type: ignore[union-attr]
    worst = report.worst
    assert worst is not None and worst.estimate is not None
    terms = {term.name: term.bytes for term in worst.estimate.terms}
    # The fixed part holds the kexec segments: the kernel at init_size and the packed initrd.
    assert fixed >= terms["kernel"] + terms["initrd_compressed"] + LOADED_SLACK
    # It is what the main system loses, and less than the unsplit recommendation.
    unsplit = max(r.reserved for r in fit(report.recommended, RAMS, profile, arch="x86_64",
                                          kernel=NEW).rows)  # fmt: skip
    assert fixed < unsplit
    # The split fits every RAM size it was made for, with the fixed part as given.
    judged = fit(report.recommended_cma, RAMS, profile, arch="x86_64", kernel=NEW)
    assert judged.fits is True, judged.reason()
    assert {row.reserved for row in judged.rows} == {fixed}
    assert {row.reservation.cma for row in judged.rows} == {cma}


def test_a_fixed_part_too_small_for_the_segments_does_not_fit(default_build: BuildResult) -> None:
    profile = _profile(default_build)
    report = fit("192M", RAMS, profile, arch="x86_64", kernel=NEW)
    worst = report.worst
    assert worst is not None and worst.estimate is not None
    loaded = loaded_need(worst.estimate)
    # Plenty of CMA, but the kernel and initrd do not fit in the fixed part.
    small = fit(f"{loaded // MiB - 8}M 512M,cma", RAMS, profile, arch="x86_64", kernel=NEW)
    assert small.fits is False
    assert "the fixed part must hold" in small.reason(), small.reason()


def test_no_split_where_the_kernel_has_no_cma_part(default_build: BuildResult) -> None:
    profile = _profile(default_build)
    assert fit("192M", RAMS, profile, arch="x86_64", kernel=OLD).recommended_cma is None
    assert fit("192M", RAMS, profile, arch="aarch64").recommended_cma is None
    # The kernel does not reserve it there: the model counts no CMA, and says why.
    row = reservation("64M 256M,cma", GiB, "x86_64", kernel=OLD)
    assert row.cma == 0 and any("',cma' is not used here" in note for note in row.notes)
    assert reservation("64M 256M,cma", GiB, "x86_64", kernel=NEW).cma == 256 * MiB


@pytest.mark.parametrize(
    "base,why",
    [
        ("qemu-arm64.toml", "does not work on aarch64: kdump-build's loaders cannot give its "
         "ranges to the capture kernel there"),
        ("qemu-x86_64-trixie.toml", "needs Linux 6.17 or newer on x86_64, not 6.12."),
    ],
)  # fmt: skip
def test_cma_in_a_recipe_where_it_cannot_work_is_one_line(
    tmp_path: Path, base: str, why: str
) -> None:
    """arm64: our loaders cannot pass it; x86_64 with Debian 13's 6.12: the kernel has none."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe_text({"crashkernel": {"reserve": "64M 128M,cma"}},
                                  base=REPO / "recipes" / base))  # fmt: skip
    result = run_cli(str(recipe), "-o", str(tmp_path / "out"))
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    expected = f"kdump-build: error: {recipe}: crashkernel.reserve: ',cma' {why}"
    assert line.startswith(expected), result.stderr
    assert not (tmp_path / "out").exists()
