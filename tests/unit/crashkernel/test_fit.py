"""The fit wired into the tool: recipe keys, `kdump-build fit`, fit.json and exit 3."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from builder.atomic import MARKER, MARKER_TEXT
from builder.binfmt.cpio import read_initrd, segments, write_cpio
from builder.compression import (
    GZIP_DECODER_WORKSPACE,
    XZ_DECODER_OVERHEAD,
    XZ_MAGIC,
    ZSTD_DECODER_OVERHEAD,
    ZSTD_MAGIC,
    Compression,
    compress,
    decoder_workspace,
)
from builder.crashkernel.fit import fit, fit_recipe, ram_sizes
from builder.crashkernel.model import (
    Calibration,
    calibration_path,
    calibrations,
    default_calibration,
    load_calibration,
)
from builder.crashkernel.profile import capture_cpus, capture_profile, initrd_decoder_workspace
from builder.crashkernel.reservation import reservation
from builder.crashkernel_syntax import parse_crashkernel
from builder.errors import FitError, FormatError, InitrdError, RecipeError
from builder.image.pipeline import BuildResult
from builder.recipe.parse import parse_recipe
from builder.units import GiB, MiB
from tests.conftest import run_cli
from tests.support.recipes import write_recipe

JSON_ROW_KEYS = {"ram", "reserved", "offset", "low"}
JUDGED_ROW_KEYS = JSON_ROW_KEYS | {"needed", "fits", "margin"}


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kdump-build: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def fast_recipe(tmp_path: Path, reserve: str, ram: str = '["1G", "4G"]') -> Path:
    """The default recipe with a faster compression level and the given reservation."""
    changes = {
        "initrd": {"compression_level": 3},
        "crashkernel": {"reserve": reserve, "ram": tomllib.loads(f"ram = {ram}")["ram"]},
    }
    return write_recipe(tmp_path / "recipe.toml", changes)


# ------------------------------------------------------------------ recipe keys


def recipe_with(crashkernel_table: str) -> str:
    return '[source]\nroot = "/"\n[dump]\ndevice = "LABEL=kdump"\n[crashkernel]\n' + (
        crashkernel_table
    )


def test_recipe_ram_default_and_given() -> None:
    default = parse_recipe(recipe_with(""), Path("r.toml"))
    assert default.crashkernel.ram == ("1G", "4G", "64G")
    given = parse_recipe(recipe_with('ram = ["2G", "0x40000000"]\n'), Path("r.toml"))
    assert ram_sizes(given.crashkernel.ram, "ram") == [2 * GiB, GiB]


@pytest.mark.parametrize(
    ("table", "fragments"),
    [
        ('ram = ["4X"]\n', ("r.toml: crashkernel.ram:", "item 0", "index 1 ('X')")),
        ('ram = ["1G", "0"]\n', ("crashkernel.ram:", "item 1", "positive")),
        ("ram = []\n", ("crashkernel.ram:", "at least one")),
        ('ram = "4G"\n', ("crashkernel.ram:", "expected an array")),
        ('reserve = "256M@"\n', ("r.toml: crashkernel.reserve:", "index 5")),
        ('reserve = "1G-:"\n', ("crashkernel.reserve:", "expected a size")),
    ],
)
def test_recipe_crashkernel_values_are_checked(table: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(recipe_with(table), Path("r.toml"))
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------ small pieces


@pytest.mark.parametrize(
    ("cmdline", "cpus"),
    [
        ("irqpoll nr_cpus=1 reset_devices", 1),
        ("console=ttyS0", 1),
        ("nr_cpus=4 nr_cpus=2", 2),  # the last one counts
        ("maxcpus=3", 3),
        ("maxcpus=3 nr_cpus=2", 2),  # nr_cpus= bounds the possible CPUs
        ("nr_cpus=0", 1),
        ("nr_cpus=x", 1),
    ],
)
def test_capture_cpus(cmdline: str, cpus: int) -> None:
    assert capture_cpus(cmdline) == cpus


def test_calibration_files_are_what_the_model_uses() -> None:
    """Each stored file is the calibration of its own architecture and kernel series."""
    stored = calibrations()
    assert ("x86_64", (6, 1)) in stored and ("x86_64", (6, 12)) in stored
    for (arch, series), path in stored.items():
        record = json.loads(path.read_text())
        assert "bench.calibrate_crashkernel" in record["regenerate"] or arch != "x86_64"
        assert record["kernel"].startswith("{}.{}.".format(*series)), (path, record["kernel"])
        calibration = default_calibration(arch, record["kernel"])
        costs = dict(calibration.target_costs)
        for name, value in record["constants"].items():
            if name.startswith("target_"):
                assert costs.pop(name.removeprefix("target_")) == value, (path, name)
            else:
                assert getattr(calibration, name) == value, (path, name)
        assert not costs, (path, costs)
        measured = {item["target"] for item in record["measurements"]}
        assert calibration.measured_targets == measured, path
        assert Calibration() != calibration  # measured, not the placeholders


def test_calibration_is_chosen_by_architecture_and_kernel_series(tmp_path: Path) -> None:
    for name in ("x86_64-6.1.json", "x86_64-6.12.json", "aarch64-6.1.json", "notes.json"):
        (tmp_path / name).write_text('{"constants": {}}')
    kernels = ("6.1.0-57-amd64", "6.12.118+deb13-amd64", "5.10.0-30-amd64", "6.6.9", "6.7.1",
               "7.0.0", "7.2.12+deb14-amd64", "7.3.4+deb13-amd64", None)  # fmt: skip
    chosen = {kernel: calibration_path("x86_64", kernel, tmp_path).name for kernel in kernels}
    assert chosen == {
        "6.1.0-57-amd64": "x86_64-6.1.json",
        "6.12.118+deb13-amd64": "x86_64-6.12.json",
        "5.10.0-30-amd64": "x86_64-6.1.json",  # nearest
        "6.6.9": "x86_64-6.1.json",  # 5 minors from 6.1, 6 from 6.12
        "6.7.1": "x86_64-6.12.json",  # 6.1 and 6.12 both 5 away: the newer
        "7.0.0": "x86_64-6.12.json",
        "7.2.12+deb14-amd64": "x86_64-6.12.json",
        "7.3.4+deb13-amd64": "x86_64-6.12.json",
        None: "x86_64-6.12.json",  # no kernel known: the newest
    }
    # With a 7.x store, as bundled (x86_64-7.2.json): every 7.x kernel takes it (Debian
    # 14's 7.2 and trixie-backports' 7.3 above all), 6.x keeps its own, and it is the
    # newest. 6.13 to 6.19 stay with 6.12 (fewer minors on the one scale).
    (tmp_path / "x86_64-7.2.json").write_text('{"constants": {}}')
    before = chosen
    chosen = {kernel: calibration_path("x86_64", kernel, tmp_path).name for kernel in kernels}
    kept: dict[str | None, str] = {k: name for k, name in before.items() if k and k < "7"}
    assert chosen == {
        **kept,
        "7.0.0": "x86_64-7.2.json",
        "7.2.12+deb14-amd64": "x86_64-7.2.json",
        "7.3.4+deb13-amd64": "x86_64-7.2.json",
        None: "x86_64-7.2.json",
    }
    assert calibration_path("x86_64", "6.19.3", tmp_path).name == "x86_64-6.12.json"
    assert calibration_path("aarch64", "6.12.0", tmp_path).name == "aarch64-6.1.json"
    refused = r"^no crashkernel calibration for riscv64 in .*\(calibrated: aarch64 6\.1, "
    refused += r"x86_64 6\.1, x86_64 6\.12, x86_64 7\.2\); run bench/"
    with pytest.raises(FitError, match=refused):
        calibration_path("riscv64", "6.12.0", tmp_path)
    with pytest.raises(FitError, match=r"kernel release 'linux': no major\.minor series"):
        calibration_path("x86_64", "linux", tmp_path)


def test_a_build_uses_the_calibration_of_its_capture_kernel(default_build: BuildResult) -> None:
    report = default_build.fit
    assert report is not None and report.rows[0].estimate is not None
    terms = {term.name: term.bytes for term in report.rows[0].estimate.terms}
    own = default_calibration("x86_64", default_build.kernel_version)
    assert terms["kernel_runtime"] == own.kernel_runtime


def test_fit_with_a_kernel_estimates_with_that_kernels_calibration(
    default_build: BuildResult,
) -> None:
    """`fit(..., kernel=...)` without a calibration takes the one of the kernel's series
    (`fit --kernel 7.2.12+deb14-amd64` is judged by x86_64-7.2), none: the newest."""
    build = default_build
    profile = capture_profile(build.recipe, build.kernel, build.cmdline, build.members,
                              build.initrd)  # fmt: skip
    measured = {}
    for kernel in ("6.1.0-57-amd64", "6.12.118+deb13-amd64", "7.2.12+deb14-amd64", None):
        rows = fit("192M", [GiB], profile, arch="x86_64", kernel=kernel).rows
        assert rows[0].estimate is not None
        terms = {term.name: term.bytes for term in rows[0].estimate.terms}
        own = default_calibration("x86_64", kernel)
        assert terms["kernel_runtime"] == own.kernel_runtime, kernel
        measured[kernel] = own.kernel_runtime
    # The stores differ, so taking the newest for every kernel would fail above.
    assert len({measured["6.1.0-57-amd64"], measured["7.2.12+deb14-amd64"]}) == 2, measured


def test_calibration_is_read_on_first_use_not_at_import() -> None:
    probe = (
        "import pathlib\n"
        "reads = []\n"
        "read_text = pathlib.Path.read_text\n"
        "def spy(path, *args, **kwargs):\n"
        "    reads.append(path.name)\n"
        "    return read_text(path, *args, **kwargs)\n"
        "pathlib.Path.read_text = spy\n"
        "import builder.crashkernel.fit, builder.image.pipeline\n"
        "assert not [name for name in reads if name.endswith('.json')], reads\n"
        "builder.crashkernel.fit.default_calibration()\n"
        "assert [name for name in reads if name.startswith('x86_64-')], reads\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "cannot read the calibration"),
        ('{"constants": 3}', "constants: expected a table"),
        ('{"constants": {"no_such": 1}}', "constants.no_such: not a Calibration field"),
        ('{"constants": {"per_cpu": -1}}', "constants.per_cpu: expected a byte count"),
        ('{"constants": {"per_cpu": 1.5}}', "constants.per_cpu: expected a byte count"),
    ],
)
def test_bad_calibration_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(content)
    with pytest.raises(FitError, match=fragment):
        load_calibration(path)


# ------------------------------------------------------------------ the build's profile


def test_build_profile_comes_from_the_real_build(default_build: BuildResult) -> None:
    report = default_build.fit
    assert report is not None
    row = report.rows[0]
    assert row.estimate is not None
    terms = {term.name: term.bytes for term in row.estimate.terms}
    # init_size read straight from the bzImage setup header (Documentation/arch/x86/boot.rst).
    (init_size,) = struct.unpack_from("<I", default_build.kernel_bytes, 0x260)
    assert terms["kernel"] == init_size
    assert terms["initrd_compressed"] == len(default_build.initrd)
    files = [
        entry for entry in read_initrd(default_build.initrd) if entry.mode & 0o170000 == 0o100000
    ]
    unpacked = sum(-(-entry.size // 4096) * 4096 for entry in files)
    assert terms["initrd_unpacked"] == unpacked
    assert "makedumpfile" in terms  # dump.collector = makedumpfile
    assert "1 CPU(s)" in next(t.explanation for t in row.estimate.terms if t.name == "per_cpu")
    assert [row.ram for row in report.rows] == [GiB, 4 * GiB, 64 * GiB]


def test_fit_recipe_overrides(default_build: BuildResult) -> None:
    base = default_build.fit
    assert base is not None and base.recommended is not None
    recipe = default_build.recipe
    worst = base.worst
    assert worst is not None and worst.estimate is not None
    profile_report = fit_recipe(
        recipe,
        _profile(default_build),
        spec="64M",
        rams=[GiB],
    )
    assert profile_report.fits is False
    assert profile_report.rows[0].reserved == 64 * MiB
    assert "largest term kernel" in profile_report.reason()
    # The recommendation, used as the reservation, fits every RAM size it was made for.
    again = fit_recipe(recipe, _profile(default_build), spec=base.recommended)
    assert again.fits is True


def _profile(result: BuildResult):  # type: ignore[no-untyped-def]
    from builder.crashkernel.profile import capture_profile

    return capture_profile(
        result.recipe, result.kernel, result.cmdline, result.members, result.initrd
    )


# ------------------------------------------------------------------ the command line


def test_fit_without_recipe_json() -> None:
    result = run_cli(
        "fit", "--crashkernel", "512M-2G:64M,2G-:128M@16M", "--ram", "1G", "--ram", "2G", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["recommended"] is None and report["fits"] is None
    rows = report["rams"]
    assert all(set(row) >= JSON_ROW_KEYS for row in rows)
    assert [(row["ram"], row["reserved"], row["offset"], row["low"]) for row in rows] == [
        (GiB, 64 * MiB, 16 * MiB, 0),
        (2 * GiB, 128 * MiB, 16 * MiB, 0),
    ]
    assert "needed" not in rows[0]


def test_fit_without_recipe_high_and_nothing() -> None:
    result = run_cli("fit", "--crashkernel", "512M,high", "--ram", "16G", "--ram", "256M", "--json")
    assert result.returncode == 0, result.stderr
    high, tiny = json.loads(result.stdout)["rams"]
    expected = reservation(parse_crashkernel("512M,high"), 16 * GiB)
    # x86_64 crash_low_size_default(): max(swiotlb 64M + 8M, 256M) below 4G.
    assert (high["reserved"], high["low"], high["offset"]) == (512 * MiB, 256 * MiB, None)
    assert high["low"] == expected.low
    assert (tiny["reserved"], tiny["low"]) == (0, 0)
    text = run_cli("fit", "--crashkernel", "192M", "--ram", "1G")
    assert text.returncode == 0, text.stderr
    assert "RAM     1G: reserved  192.0 MiB" in text.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--ram", "4X", "--crashkernel", "192M"), ("--ram='4X'", "index 1 ('X')")),
        (("--ram", "0", "--crashkernel", "192M"), ("--ram: RAM size must be positive",)),
        (("--ram=-1G", "--crashkernel", "192M"), ("--ram='-1G'", "index 0 ('-')")),
        (("--ram", "", "--crashkernel", "192M"), ("--ram=''", "expected a size")),
        (("--ram", "1G", "--ram", "2T5"), ("--ram item 1='2T5'", "index 2")),
        (("--ram", "1G", "--crashkernel", "12Q"), ("crashkernel='12Q'", "index 2 ('Q')")),
        (("--ram", "1G", "--crashkernel", "1G-512M:64M"), ("range end must be above",)),
        (("--ram", "1G", "--crashkernel", ""), ("no crashkernel= value",)),
        (("--ram", "1G"), ("give a recipe or --crashkernel",)),
        (("--crashkernel", "1G", "--arch", "sparc"), ("arch: 'sparc' is not one of",)),
    ],
)
def test_fit_bad_values_are_one_line_errors(
    args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    one_line_error(run_cli("fit", *args), 2, *fragments)


def test_fit_recipe_that_does_not_fit_exits_3(tmp_path: Path) -> None:
    recipe = fast_recipe(tmp_path, "192M")
    result = run_cli("fit", str(recipe), "--crashkernel", "80M", "--ram", "1G", "--json")
    line = one_line_error(
        result, 3, str(recipe), "crashkernel=80M does not fit on 1G RAM", "largest term kernel"
    )
    assert "recommended crashkernel=" in line
    report = json.loads(result.stdout)
    assert report["fits"] is False
    (row,) = report["rams"]
    assert set(row) >= JUDGED_ROW_KEYS
    assert row["reserved"] == 80 * MiB and row["fits"] is False
    assert row["margin"] == row["reserved"] - row["needed"] < 0
    assert row["largest_term"] == "kernel"
    recommended = parse_crashkernel(report["recommended"])
    assert recommended.size >= row["needed"]  # type: ignore[union-attr]


def test_build_that_does_not_fit(tmp_path: Path) -> None:
    recipe = fast_recipe(tmp_path, "80M")
    outdir = tmp_path / "out"
    outdir.mkdir()
    # An earlier output of ours (marked), which only a successful build replaces.
    (outdir / MARKER).write_bytes(MARKER_TEXT)
    (outdir / "initrd.img").write_bytes(b"previous")
    result = run_cli(str(recipe), "-o", str(outdir))
    one_line_error(result, 3, "crashkernel.reserve", "does not fit", "largest term kernel")
    assert sorted(path.name for path in outdir.iterdir()) == [MARKER, "initrd.img"]
    assert (outdir / "initrd.img").read_bytes() == b"previous"

    forced = run_cli(str(recipe), "-o", str(outdir), "--ignore-fit", "-q")
    assert forced.returncode == 0, forced.stderr
    warning = [line for line in forced.stderr.splitlines() if "makedumpfile" not in line]
    assert len(warning) == 1 and warning[0].startswith("kdump-build: warning: --ignore-fit")
    report = json.loads((outdir / "fit.json").read_text())
    assert report["fits"] is False and report["crashkernel"] == "80M"
    assert [row["ram"] for row in report["rams"]] == [GiB, 4 * GiB]
    assert all(set(row) >= JUDGED_ROW_KEYS for row in report["rams"])
    assert isinstance(report["recommended"], str)


# ------------------------------------------------------------------ decompressor workspace


def _zstd_window_by_cli(path: Path) -> int:
    listing = subprocess.run(["zstd", "-lv", str(path)], capture_output=True, text=True, check=True)
    match = re.search(r"Window Size: .*\((\d+) B\)", listing.stdout)
    assert match, listing.stdout
    return int(match.group(1))


def _xz_dictionary_by_cli(path: Path) -> int:
    listing = subprocess.run(["xz", "-lvv", str(path)], capture_output=True, text=True, check=True)
    match = re.search(r"--lzma2=dict=(\d+)(KiB|MiB)", listing.stdout)
    assert match, listing.stdout
    return int(match.group(1)) << (10 if match.group(2) == "KiB" else 20)


@pytest.mark.parametrize(
    ("method", "level", "size"),
    [
        ("zstd", 19, 12 << 20),  # window 8M, not the content size
        ("zstd", 19, 3 << 20),  # single segment: the window is the content size
        ("zstd", 3, 9 << 20),
        ("zstd", 1, 300 << 10),
        ("xz", 6, 1 << 20),
        ("xz", 9, 1 << 20),
        ("xz", 1, 1 << 20),
    ],
)
def test_decompressor_workspace_matches_the_tools(
    tmp_path: Path, method: str, level: int, size: int
) -> None:
    """Window and dictionary sizes agree with zstd -lv and xz -lvv reading the same file."""
    data = bytes(range(256)) * (size // 256)
    data = bytes(byte ^ (index * 7919 % 251) for index, byte in enumerate(data))
    compressed = compress(data, Compression(method), level)
    path = tmp_path / f"initrd.{method}"
    path.write_bytes(compressed)
    workspace, description = initrd_decoder_workspace(compressed)
    if method == "zstd":
        assert workspace == _zstd_window_by_cli(path) + ZSTD_DECODER_OVERHEAD, description
    else:
        assert workspace == _xz_dictionary_by_cli(path) + XZ_DECODER_OVERHEAD, description


def test_decompressor_workspace_other_forms() -> None:
    assert initrd_decoder_workspace(compress(b"x" * 1000, Compression.GZIP, 9)) == (
        GZIP_DECODER_WORKSPACE,
        "gzip window 32K",
    )
    assert initrd_decoder_workspace(compress(write_cpio([]), Compression.NONE, 1))[0] == 0
    with pytest.raises(InitrdError, match=r"^initrd: byte 0x0: zstd data is truncated"):
        initrd_decoder_workspace(ZSTD_MAGIC + b"\x60")
    # Headers cut short inside an otherwise readable stream: the parsers say where.
    for broken, offset in ((ZSTD_MAGIC + b"\x60", "byte 4"), (XZ_MAGIC + bytes(7), "byte 12")):
        with pytest.raises(FormatError, match=offset):
            decoder_workspace(broken)


def test_decompressor_workspace_takes_the_largest_stream() -> None:
    """An early plain archive and several streams: the largest window counts."""
    small = compress(bytes(300 << 10), Compression.ZSTD, 1)
    large = compress(bytes(range(256)) * (12 << 12), Compression.ZSTD, 19)
    initrd = write_cpio([]) + small + large + compress(b"x" * 4096, Compression.GZIP, 9)
    assert initrd_decoder_workspace(initrd) == initrd_decoder_workspace(large)
    assert initrd_decoder_workspace(initrd)[0] > initrd_decoder_workspace(small)[0]
    lz4 = compress(b"y" * 5000, Compression.LZ4, 9)
    assert initrd_decoder_workspace(small + lz4) == (8 << 20, "lz4 chunk 8M")


def test_build_profile_counts_the_zstd_window(default_build: BuildResult, tmp_path: Path) -> None:
    report = default_build.fit
    assert report is not None and report.rows[0].estimate is not None
    terms = {term.name: term.bytes for term in report.rows[0].estimate.terms}
    windows = []
    for index, segment in enumerate(segments(default_build.initrd)):
        if segment.compressed:  # each stream on its own, as the kernel unpacks them one by one
            path = tmp_path / f"stream{index}.zst"
            path.write_bytes(default_build.initrd[segment.start : segment.end])
            windows.append(_zstd_window_by_cli(path))
    assert windows
    assert terms["initrd_decompressor"] == max(windows) + ZSTD_DECODER_OVERHEAD


def test_model_meets_the_calibration_goal_on_the_stored_runs() -> None:
    """For every calibrated guest of every stored kernel:
    measured minimum <= recommendation <= minimum + 32 MiB."""
    for (arch, _), path in calibrations().items():
        _check_stored_runs(arch, json.loads(path.read_text()))


def _check_stored_runs(arch: str, record: dict[str, Any]) -> None:
    from builder.crashkernel.fit import recommend
    from builder.crashkernel.model import CaptureProfile, estimate

    calibration = default_calibration(arch, record["kernel"])
    assert len(record["measurements"]) >= 4
    for measurement in record["measurements"]:
        profile = CaptureProfile(**record["profiles"][measurement["variant"]])
        ram = measurement["ram"]

        def needed(r: int, p: CaptureProfile = profile) -> int:
            return estimate(p, r, calibration).total

        spec, problems = recommend([ram], needed)
        assert spec is not None, problems
        recommended = parse_crashkernel(spec).size  # type: ignore[union-attr]
        minimum = measurement["minimum"]
        assert minimum <= recommended <= minimum + 32 * MiB, (measurement, spec)
        # The stored trials show the minimum worked and the step below failed.
        sizes = {
            trial["crashkernel"]: trial["ok"] for trial in measurement["trials"] if "ok" in trial
        }
        assert sizes[f"{minimum // MiB}M"] is True
        assert sizes.get(f"{minimum // MiB - 8}M") is False
