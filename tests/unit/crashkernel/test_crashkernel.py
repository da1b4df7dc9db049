"""crashkernel= parsing, reservation, estimate and fit.

Expected values come from the kernel's documented rules, not from our output:

- Documentation/admin-guide/kernel-parameters.txt (crashkernel=size[KMG][@offset[KMG]],
  crashkernel=range1:size1[,range2:size2,...][@offset], size,high / size,low / size,cma)
- Documentation/admin-guide/kdump/kdump.rst ("crashkernel=512M-2G:64M,2G-:128M": below
  512M nothing, 512M up to 2G 64M, 2G and more 128M)
- kernel/crash_reserve.c: parse_crashkernel_mem() rounds system RAM up to 128M, matches
  "start <= ram < end", and rejects the value when a walked entry's size >= that RAM;
  parse_crashkernel() rejects size 0 and size >= system RAM; a 0 base means "anywhere";
  ",low" defaults to DEFAULT_CRASH_KERNEL_LOW_SIZE when ",high" has none.
- lib/cmdline.c memparse(): simple_strtoull base 0 (0x hex, leading 0 octal) and
  K/M/G/T/P/E suffixes, either case.
- arch/x86/include/asm/crash_reserve.h: CRASH_ALIGN 16M, low size default
  max(swiotlb + 8M, 256M); arch/arm64/include/asm/crash_reserve.h: CRASH_ALIGN 2M;
  include/linux/crash_reserve.h: generic DEFAULT_CRASH_KERNEL_LOW_SIZE 128M.
- makedumpfile calculate_cyclic_buffer_size(): min(60% free, 4 MiB, max_mapnr * 2 / 8).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.crashkernel.fit import fit, recommend
from builder.crashkernel.live import live_reservation, read_live_reservation
from builder.crashkernel.model import (
    Calibration,
    CaptureProfile,
    Estimate,
    Term,
    default_calibration,
    estimate,
)
from builder.crashkernel.reservation import Placement, crash_rules, reservation
from builder.crashkernel_syntax import (
    CrashkernelConfig,
    CrashkernelSyntaxError,
    RangeEntry,
    RangesSpec,
    SimpleSpec,
    Suffix,
    SuffixSpec,
    parse_crashkernel,
    parse_crashkernel_args,
    parse_size,
)
from builder.errors import FitError, RecipeError, SourceError
from builder.kexec.memmap import Range, parse_iomem
from builder.targets import target_kind, target_kinds
from builder.units import format_size
from tests.support.paths import DATA

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40
IOMEM = DATA / "iomem"
QEMU_1G = IOMEM / "qemu-q35-1g-crashkernel-192m.txt"
SERVER_HIGH = IOMEM / "server-16g-crashkernel-512m-high.txt"


# ------------------------------------------------------------------ parsing: every form


def test_simple_size() -> None:
    # kernel-parameters.txt: crashkernel=size[KMG][@offset[KMG]]
    assert parse_crashkernel("256M") == SimpleSpec("256M", 256 * M, None)


def test_simple_size_with_offset() -> None:
    assert parse_crashkernel("256M@16M") == SimpleSpec("256M@16M", 256 * M, 16 * M)


def test_offset_zero_means_anywhere() -> None:
    # reserve_crashkernel_generic(): "if (crash_base)" -> a 0 base is not a fixed base.
    spec = parse_crashkernel("256M@0")
    assert isinstance(spec, SimpleSpec)
    assert spec.offset is None


def test_prefix_is_accepted() -> None:
    assert parse_crashkernel("crashkernel=128M") == SimpleSpec("128M", 128 * M)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("4k", 4 * K),
        ("4K", 4 * K),
        ("3m", 3 * M),
        ("2g", 2 * G),
        ("2G", 2 * G),
        ("1t", T),
        ("1T", T),
        ("1p", 1 << 50),
        ("1P", 1 << 50),
        ("1e", 1 << 60),
        ("15E", 15 << 60),
    ],
)
def test_memparse_suffixes(text: str, size: int) -> None:
    # memparse(): K M G T P E, either case, each a further shift by 10.
    assert parse_crashkernel(text) == SimpleSpec(text, size)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0x10000000", 256 * M),
        ("0x10M", 16 * M),
        ("0X100m", 256 * M),
        ("0x1e", 0x1E),  # 'e' is a hex digit here, not the exa suffix
        ("010M", 8 * M),  # leading 0: octal, as simple_strtoull(base 0)
        ("0", 0),
    ],
)
def test_memparse_bases(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_ranges_from_kdump_rst() -> None:
    spec = parse_crashkernel("512M-2G:64M,2G-:128M")
    assert spec == RangesSpec(
        "512M-2G:64M,2G-:128M",
        (RangeEntry(512 * M, 2 * G, 64 * M), RangeEntry(2 * G, None, 128 * M)),
        None,
    )


def test_ranges_open_from_zero() -> None:
    assert parse_crashkernel("0-:256M") == RangesSpec("0-:256M", (RangeEntry(0, None, 256 * M),))


def test_ranges_with_offset() -> None:
    spec = parse_crashkernel("1G-4G:192M,4G-:256M@32M")
    assert isinstance(spec, RangesSpec)
    assert spec.offset == 32 * M
    assert len(spec.entries) == 2


@pytest.mark.parametrize(
    ("text", "size", "suffix"),
    [
        ("512M,high", 512 * M, Suffix.HIGH),
        ("128M,low", 128 * M, Suffix.LOW),
        ("0,low", 0, Suffix.LOW),
        ("64M,cma", 64 * M, Suffix.CMA),
    ],
)
def test_suffix_forms(text: str, size: int, suffix: Suffix) -> None:
    assert parse_crashkernel(text) == SuffixSpec(text, size, suffix)


def test_args_last_plain_value_wins() -> None:
    # get_last_crashkernel(): the last crashkernel= without a known suffix is used.
    config = parse_crashkernel_args("ro quiet crashkernel=256M crashkernel=512M console=ttyS0")
    assert isinstance(config.main, SimpleSpec)
    assert config.main.size == 512 * M


def test_args_suffixes_are_separate() -> None:
    config = parse_crashkernel_args("crashkernel=1G,high crashkernel=96M,low crashkernel=2G,cma")
    assert config.main is None
    assert config.high and config.high.size == G
    assert config.low and config.low.size == 96 * M
    assert config.cma and config.cma.size == 2 * G
    assert str(config) == "crashkernel=1G,high crashkernel=96M,low crashkernel=2G,cma"


def test_args_bare_values() -> None:
    config = parse_crashkernel_args("512M,high 128M,low")
    assert config.high and config.low


def test_args_without_value() -> None:
    with pytest.raises(RecipeError):
        parse_crashkernel_args("quiet splash")


def test_format_size_round_trips() -> None:
    for size in (1, 1000, 4 * K, 192 * M, 4224 * M, 4 * G, 3 * T):
        assert parse_size(format_size(size)) == size


# ------------------------------------------------------------------ parsing: malformed


# (value, 0-based index of the first bad character)
MALFORMED = [
    ("", 0),
    ("abc", 0),
    ("-256M", 0),
    ("+256M", 0),
    ("\uff12\uff15\uff16M", 0),  # fullwidth digits are not digits to the kernel
    ("256Q", 3),
    ("1 G", 1),
    ("256M 128M", 4),
    ("256M@", 5),
    ("256M@x", 5),
    ("256M@16Mx", 8),
    ("256Mhigh", 4),
    ("256M,HIGH", 4),  # suffixes are case-sensitive (strncmp)
    ("256M,high,low", 4),
    ("256M@16M,high", 4),
    (",high", 0),
    ("0x", 1),  # no hex digit after 0x: octal "0", then 'x'
    ("08M", 1),  # octal stops at '8'
    ("99999999999999999999", 0),  # beyond 64 bits
    ("16E", 0),  # exactly 2**64
    ("1G-", 2),  # no ':' -> simple form -> '-' is unexpected
    ("1G:256M", 2),
    (":256M", 0),
    ("1G-512M:256M", 3),  # end <= start
    ("1G-1G:256M", 3),
    ("1G--2G:256M", 3),
    ("1G-2Gx:256M", 5),
    ("1G-:", 4),
    ("1G-2G:", 6),
    ("1G-2G:abc", 6),
    ("1G-2G:256M,", 11),
    ("1G-2G:256M;2G-:512M", 10),
    ("1G-:256M,:512M", 9),
    ("1G-2G:256M@", 11),
    ("1G-2G:256M@16M,2G-:512M", 14),
    ("1G-2G:256M@16M@32M", 14),
    ("crashkernel=", 0),
]


@pytest.mark.parametrize(("value", "position"), MALFORMED)
def test_malformed_values(value: str, position: int) -> None:
    with pytest.raises(CrashkernelSyntaxError) as caught:
        parse_crashkernel(value)
    error = caught.value
    assert isinstance(error, RecipeError)
    assert error.position == position
    message = str(error)
    assert "\n" not in message
    assert f"index {position}" in message
    assert repr(value.removeprefix("crashkernel=")) in message


def test_malformed_count() -> None:
    assert len(MALFORMED) >= 20


def test_error_names_the_key() -> None:
    with pytest.raises(RecipeError, match=r"^recipe.toml: crashkernel.spec='25x'"):
        parse_crashkernel("25x", where="recipe.toml: crashkernel.spec")


SYNTAX = "0123456789xXkKmMgGtTpPeE-:,@ highlowcma"


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=SYNTAX, max_size=30)))
def test_parser_raises_only_recipe_errors(text: str) -> None:
    for parse in (parse_crashkernel, parse_crashkernel_args, parse_size):
        with contextlib.suppress(RecipeError):
            parse(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_size_round_trip_property(size: int) -> None:
    assert parse_size(format_size(size)) == size


# ------------------------------------------------------------------ reservation: ranges

KDUMP_RST = "512M-2G:64M,2G-:128M"


@pytest.mark.parametrize(
    ("ram", "reserved"),
    [
        (256 * M, 0),  # below the first range
        (384 * M, 0),  # a 128M multiple stays put: 384M < 512M
        (384 * M + 1, 64 * M),  # rounds up to 512M: inside the first range
        (512 * M, 64 * M),  # start is inclusive
        (1920 * M, 64 * M),  # just below the range end (2G - 128M)
        (1920 * M + 1, 128 * M),  # rounds up to 2G: end is exclusive -> next range
        (2 * G - 1, 128 * M),
        (2 * G, 128 * M),  # exactly at the range end
        (64 * G, 128 * M),  # open-ended last range
    ],
)
def test_kdump_rst_example(ram: int, reserved: int) -> None:
    assert reservation(KDUMP_RST, ram).size == reserved


def test_ranges_first_match_wins() -> None:
    # The loop stops at the first matching entry.
    assert reservation("0-8G:256M,4G-:512M", 6 * G).size == 256 * M


def test_walked_entry_too_large_rejects_all() -> None:
    # parse_crashkernel_mem(): "if (size >= total_mem) return -EINVAL" for each walked entry.
    assert reservation("0-2G:1G,2G-:256M", 1 * G).size == 0
    assert reservation("0-2G:1G,2G-:256M", 4 * G).size == 256 * M


def test_entries_after_match_are_not_checked() -> None:
    assert reservation("0-2G:256M,2G-:64G", 1 * G).size == 256 * M


def test_no_range_matches() -> None:
    result = reservation("4G-:256M", 2 * G)
    assert (result.size, result.placement, result.offset) == (0, Placement.NONE, None)
    assert result.notes


# ------------------------------------------------------------------ reservation: sizes, offsets


def test_simple_reservation_x86() -> None:
    result = reservation("192M", 1 * G)
    assert (result.size, result.alignment, result.offset, result.low) == (192 * M, 16 * M, None, 0)
    assert result.placement is Placement.LOW


def test_arm64_alignment() -> None:
    assert reservation("192M", 1 * G, "arm64").alignment == 2 * M
    assert reservation("192M", 1 * G, "aarch64").alignment == 2 * M
    assert crash_rules("amd64") == crash_rules("x86_64")


def test_unknown_arch() -> None:
    with pytest.raises(RecipeError, match="'sparc' is not one of"):
        reservation("192M", G, "sparc")


def test_arch_without_reservation_rules() -> None:
    with pytest.raises(RecipeError, match="does not predict the reservation on ppc64le"):
        reservation("192M", G, "ppc64le")


def test_size_not_below_ram_is_refused() -> None:
    # parse_crashkernel(): "if (*crash_size >= system_ram) ret = -EINVAL".
    assert reservation("1G", 1 * G).size == 0
    assert reservation("1G", 1 * G + 1).size == G


def test_size_zero_reserves_nothing() -> None:
    assert reservation("0", 4 * G).placement is Placement.NONE


def test_fixed_offset() -> None:
    result = reservation("256M@16M", 4 * G)
    assert (result.size, result.offset, result.placement) == (256 * M, 16 * M, Placement.FIXED)


def test_ranges_offset_applies_to_match() -> None:
    result = reservation("1G-4G:192M,4G-:256M@32M", 8 * G)
    assert (result.size, result.offset) == (256 * M, 32 * M)


def test_unaligned_offset_is_refused() -> None:
    # memblock_phys_alloc_range(size, CRASH_ALIGN, base, base + size) needs an aligned base.
    assert reservation("256M@1M", 4 * G).size == 0
    assert reservation("256M@1M", 4 * G, "arm64").size == 0
    assert reservation("256M@2M", 4 * G, "arm64").offset == 2 * M


def test_ram_must_be_positive() -> None:
    with pytest.raises(RecipeError):
        reservation("256M", 0)


# ------------------------------------------------------------------ reservation: high/low/cma


def test_high_gets_default_low_on_x86() -> None:
    # DEFAULT_CRASH_KERNEL_LOW_SIZE on x86_64: max(swiotlb 64M + 8M, 256M) = 256M.
    result = reservation("512M,high", 16 * G)
    assert (result.size, result.placement, result.low) == (512 * M, Placement.HIGH, 256 * M)


def test_high_default_low_follows_swiotlb() -> None:
    assert reservation("512M,high", 16 * G, swiotlb_bytes=512 * M).low == 520 * M


def test_high_default_low_on_arm64() -> None:
    assert reservation("512M,high", 16 * G, "arm64").low == 128 * M


def test_high_with_explicit_low() -> None:
    assert reservation("512M,high 96M,low", 16 * G).low == 96 * M
    assert reservation("512M,high 0,low", 16 * G).low == 0


def test_high_without_memory_above_4g_falls_back_low() -> None:
    result = reservation("512M,high", 2 * G)
    assert (result.placement, result.low) == (Placement.LOW, 0)
    assert reservation("512M,high", 16 * G, low_ram=16 * G).placement is Placement.LOW


def test_plain_value_beats_high() -> None:
    result = reservation("256M 512M,high 128M,low", 16 * G)
    assert (result.size, result.low, result.placement) == (256 * M, 0, Placement.LOW)
    assert any("ignored" in note for note in result.notes)


def test_plain_too_big_for_low_memory_goes_high() -> None:
    # Fallback path: search above 4G with crash_low_size = DEFAULT_CRASH_KERNEL_LOW_SIZE.
    result = reservation("3G", 16 * G)
    assert (result.placement, result.low) == (Placement.HIGH, 256 * M)


def test_low_or_cma_alone_reserve_nothing() -> None:
    assert reservation("128M,low", 16 * G).size == 0
    assert reservation("64M,cma", 16 * G).size == 0
    assert reservation("0,high", 16 * G).size == 0


def test_cma_is_reported_separately() -> None:
    result = reservation("256M 1G,cma", 16 * G)
    assert (result.size, result.cma, result.total) == (256 * M, G, 256 * M + G)


def test_reservation_to_json() -> None:
    data = reservation("512M,high", 16 * G).to_json()
    assert data["reserved"] == 512 * M
    assert data["low"] == 256 * M
    assert data["offset"] is None
    json.dumps(data)


def test_config_object_accepted() -> None:
    config = CrashkernelConfig(main=SimpleSpec("256M", 256 * M))
    assert reservation(config, 4 * G).size == 256 * M
    assert reservation(SuffixSpec("1G,high", G, Suffix.HIGH), 16 * G).size == G


# ------------------------------------------------------------------ live reservation


def test_live_reservation_qemu_sample() -> None:
    live = live_reservation(QEMU_1G.read_text(), "201326592\n")
    assert live.main == Range(0x33000000, 0x3F000000)
    assert live.low is None
    assert live.size == 192 * M
    assert live.to_json()["reserved"] == 192 * M


def test_live_matches_prediction_qemu() -> None:
    memory = parse_iomem(QEMU_1G.read_text())
    ram = sum(r.size for r in memory.system_ram())
    predicted = reservation("192M", ram)
    live = live_reservation(QEMU_1G.read_text())
    assert live.main is not None
    assert predicted.size == live.main.size
    assert live.main.start % predicted.alignment == 0


def test_live_high_and_low_sample() -> None:
    text = SERVER_HIGH.read_text()
    live = live_reservation(text)
    assert live.main == Range(0x45F000000, 0x47F000000)
    assert live.low == Range(0x4C000000, 0x5C000000)
    memory = parse_iomem(text)
    predicted = reservation("512M,high", sum(r.size for r in memory.system_ram()))
    assert (predicted.size, predicted.low) == (live.main.size, live.low.size)


def test_live_zeroed_iomem_uses_sysfs() -> None:
    zeroed = "00000000-00000000 : System RAM\n  00000000-00000000 : Crash kernel\n"
    live = live_reservation(zeroed, "268435456")
    assert (live.main, live.size) == (None, 256 * M)


def test_live_without_reservation() -> None:
    live = live_reservation("00100000-3ffdefff : System RAM\n", "0\n")
    assert (live.main, live.size) == (None, 0)


def test_live_bad_sysfs() -> None:
    with pytest.raises(SourceError):
        live_reservation(None, "lots")


def test_read_live_reservation_files(tmp_path: Path) -> None:
    (tmp_path / "iomem").write_text(QEMU_1G.read_text())
    (tmp_path / "kexec_crash_size").write_text("201326592\n")
    live = read_live_reservation(tmp_path / "iomem", tmp_path / "kexec_crash_size")
    assert live.size == 192 * M
    missing = read_live_reservation(tmp_path / "none", tmp_path / "none")
    assert (missing.main, missing.size) == (None, 0)


# ------------------------------------------------------------------ estimate

PROFILE = CaptureProfile(
    kernel_memory_size=48 * M,
    initrd_compressed_size=12 * M,
    initrd_unpacked_size=30 * M,
    cpus=1,
    dump_target="local",
)


def _term(result: Estimate, name: str) -> Term:
    return next(term for term in result.terms if term.name == name)


def test_estimate_terms_are_explained() -> None:
    result = estimate(PROFILE, 4 * G)
    names = [term.name for term in result.terms]
    assert names[:3] == ["kernel", "initrd_compressed", "initrd_unpacked"]
    assert {"per_cpu", "crashed_ram", "makedumpfile", "dump_target", "memmap"} <= set(names)
    assert all(term.explanation and term.bytes >= 0 for term in result.terms)
    assert result.total == sum(term.bytes for term in result.terms)


@pytest.mark.parametrize(
    ("ram", "bitmap"),
    [
        (1 * G, 64 * K),  # 262144 pages * 2 bits / 8
        (16 * G, 1 * M),
        (64 * G, 4 * M),  # capped at 4 MiB
        (1 * T, 4 * M),
    ],
)
def test_makedumpfile_bitmaps(ram: int, bitmap: int) -> None:
    term = _term(estimate(PROFILE, ram), "makedumpfile")
    assert term.bytes == default_calibration().makedumpfile + 2 * bitmap


def test_without_makedumpfile() -> None:
    profile = CaptureProfile(48 * M, 12 * M, 30 * M, makedumpfile=False, dump_target="raw")
    names = [term.name for term in estimate(profile, G).terms]
    assert "makedumpfile" not in names
    assert _term(estimate(profile, G), "dump_target").bytes == target_kind("raw").memory.bytes


def test_per_cpu_scales() -> None:
    one = _term(estimate(PROFILE, G), "per_cpu").bytes
    four = _term(estimate(CaptureProfile(48 * M, 12 * M, 30 * M, cpus=4), G), "per_cpu").bytes
    assert four == 4 * one


def test_network_targets_cost_more() -> None:
    """In the priors and in Debian 12's measurements (Debian 13's nfs guest needed no more
    than its local one, beyond its larger initrd: there the fitted nfs cost is 0)."""
    for calibration in (Calibration(), default_calibration("x86_64", "6.1.0-57-amd64")):
        totals = {
            target.name: estimate(
                CaptureProfile(48 * M, 12 * M, 30 * M, dump_target=target.name), G, calibration
            ).total
            for target in target_kinds()
        }
        assert totals["ssh"] > totals["nfs"] > totals["local"]


def test_memmap_term_pays_for_the_reservation_itself() -> None:
    cal = default_calibration()
    result = estimate(PROFILE, G)
    memmap = _term(result, "memmap").bytes
    fraction = cal.struct_page / cal.page_size + cal.hash_per_mib / M
    # A reservation of exactly what the capture uses spends that * fraction on its struct
    # pages; the headroom is a margin on top, not something the capture allocates.
    used = result.total - _term(result, "headroom").bytes
    assert result.terms[-1].name == "headroom"
    assert memmap >= used * fraction
    assert memmap < used * fraction + 1


def test_calibration_overrides() -> None:
    cal = Calibration(kernel_runtime=10 * M, headroom=0)
    assert _term(estimate(PROFILE, G, cal), "kernel_runtime").bytes == 10 * M
    assert _term(estimate(PROFILE, G, cal), "headroom").bytes == 0
    default = default_calibration().kernel_runtime
    assert _term(estimate(PROFILE, G), "kernel_runtime").bytes == default


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_memory_size": -1, "initrd_compressed_size": 0, "initrd_unpacked_size": 0},
        {
            "kernel_memory_size": 0,
            "initrd_compressed_size": 0,
            "initrd_unpacked_size": 0,
            "cpus": 0,
        },
    ],
)
def test_bad_profile(kwargs: dict[str, object]) -> None:
    with pytest.raises(RecipeError):
        CaptureProfile(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ fit and recommendation

FLAT_200M = Estimate((Term("everything", 200 * M, "all of it"),))


def test_fit_fits() -> None:
    report = fit("256M", [1 * G, 4 * G], FLAT_200M)
    assert report.fits is True
    assert [row.margin for row in report.rows] == [56 * M, 56 * M]
    assert report.recommended == "200M"
    report.check()


def test_fit_does_not_fit_names_largest_term() -> None:
    estimate_ = Estimate((Term("kernel", 50 * M, "k"), Term("initrd_unpacked", 150 * M, "i")))
    report = fit("128M", [4 * G], estimate_)
    assert report.fits is False
    assert report.rows[0].margin == -72 * M
    assert report.largest_term and report.largest_term.name == "initrd_unpacked"
    with pytest.raises(FitError) as caught:
        report.check()
    assert caught.value.exit_code == 3
    message = str(caught.value)
    assert "\n" not in message
    assert "initrd_unpacked" in message and "4G" in message and "200M" in message


def test_fit_without_estimate_is_reservation_only() -> None:
    report = fit("512M,high", [16 * G], None)
    row = report.to_json()["rams"][0]  # type: ignore[index]
    assert row["ram"] == 16 * G
    assert row["reserved"] == 512 * M
    assert row["offset"] is None
    assert row["low"] == 256 * M
    assert "needed" not in row
    assert report.fits is None and report.recommended is None


def test_fit_json_has_required_keys() -> None:
    report = fit("1G-:256M@16M", [2 * G, 8 * G], PROFILE)
    data = report.to_json()
    json.dumps(data)
    assert set(data) >= {"recommended", "largest_term", "rams", "fits"}
    for row in data["rams"]:  # type: ignore[attr-defined]
        assert set(row) >= {"ram", "reserved", "offset", "low", "needed", "fits", "margin"}
        assert row["offset"] == 16 * M


def test_fit_no_crashkernel() -> None:
    report = fit(None, [4 * G], FLAT_200M)
    assert report.rows[0].reserved == 0
    assert report.fits is False
    assert report.recommended == "200M"
    assert "no crashkernel=" in report.reason()


def test_fit_needs_a_ram_size() -> None:
    with pytest.raises(RecipeError):
        fit("256M", [], FLAT_200M)


def test_low_range_is_not_counted() -> None:
    # The ,low range feeds swiotlb; only the main region must hold the capture.
    report = fit("128M,high", [16 * G], FLAT_200M)
    assert report.rows[0].reservation.low == 256 * M
    assert report.fits is False


@pytest.mark.parametrize("rams", [[1 * G], [1 * G, 4 * G], [1 * G, 4 * G, 64 * G], [3 * G + 5]])
def test_recommendation_fits_every_ram(rams: list[int]) -> None:
    report = fit(None, rams, PROFILE)
    assert report.recommended is not None
    again = fit(report.recommended, rams, PROFILE)
    assert again.fits is True
    step = default_calibration().recommend_step
    margins = [row.margin for row in again.rows]
    assert all(margin is not None and margin >= 0 for margin in margins)
    # The open last range is sized for its own RAM: less than one step to spare.
    assert 0 <= (again.rows[-1].margin or 0) < step
    # Other ranges are sized for the top of their RAM window; the goal allows
    # at most 32 MiB above the minimum.
    assert all((margin or 0) < step + 32 * M for margin in margins)


def test_recommendation_ranges_syntax() -> None:
    need = {1 * G: 100 * M, 4 * G: 150 * M, 64 * G: 300 * M}

    def needed_for(ram: int) -> int:
        # Step function: whatever the largest listed RAM at or below needs.
        return max((value for size, value in need.items() if size <= ram), default=100 * M)

    recommended, problems = recommend(list(need), needed_for)
    assert problems == ()
    # Range i covers [RAM_i, RAM_i+1); its size covers the top of the range.
    assert recommended == "1G-4G:104M,4G-64G:152M,64G-:304M"
    spec = parse_crashkernel(recommended)
    assert isinstance(spec, RangesSpec)
    for ram, value in need.items():
        assert reservation(spec, ram).size >= value


def test_recommendation_first_range_starts_at_rounded_ram() -> None:
    recommended, _ = recommend([1 * G + 1, 8 * G], lambda ram: 100 * M if ram <= G + M else 200 * M)
    # The window [1152M, 8G) tops out at 8G - 128M, which needs 200M: everything merges.
    assert recommended == "200M"
    recommended, _ = recommend([1 * G + 1, 8 * G], lambda ram: 100 * M if ram < 8 * G else 200 * M)
    assert recommended == "1152M-8G:104M,8G-:200M"


def test_recommendation_impossible() -> None:
    report = fit("256M", [512 * M, 4 * G], Estimate((Term("huge", 600 * M, "too much"),)))
    assert report.recommended is None
    assert report.notes and "512M" in report.notes[0]
    assert report.fits is False


def test_recommend_without_ram() -> None:
    assert recommend([], lambda ram: M) == (None, ("no RAM size given",))


# ------------------------------------------------------------------ arm64 before 6.2

ARM64_61 = "6.1.0-57-arm64"  # Debian 12's: the rules measured in QEMU virt


def test_arm64_61_high_alone_gets_no_low_range() -> None:
    # Measured: crashkernel=256M,high on a 4 GiB virt guest reserved 0x12b600000-0x13b5fffff
    # and nothing below 4 GiB (arch/arm64/mm/init.c in 6.1: crash_low_size stays 0).
    result = reservation("256M,high", 4 * G, "arm64", kernel=ARM64_61)
    assert (result.size, result.placement, result.low) == (256 * M, Placement.HIGH, 0)
    with_low = reservation("256M,high 64M,low", 4 * G, "arm64", kernel=ARM64_61)
    assert (with_low.placement, with_low.low) == (Placement.HIGH, 64 * M)
    # From 6.2 (a149cf00b158) the default low range is 128 MiB.
    assert reservation("256M,high", 4 * G, "arm64", kernel="6.12.117+deb13-arm64").low == 128 * M


def test_arm64_61_plain_value_never_falls_back_above_4g() -> None:
    # A plain value is searched below arm64_dma_phys_limit only (no fallback until a9ae89df7377).
    result = reservation("3584M", 16 * G, "arm64", kernel=ARM64_61)
    assert (result.size, result.placement) == (0, Placement.NONE)
    assert "does not fall back above it (use ',high')" in result.notes[0]
    newer = reservation("3584M", 16 * G, "arm64", kernel="6.12.0")
    assert (newer.placement, newer.low) == (Placement.HIGH, 128 * M)
    # Below 4 GiB it is the same as ever: the 1 GiB guest's 192M.
    small = reservation("192M", 1 * G, "arm64", kernel=ARM64_61)
    assert (small.size, small.placement, small.alignment) == (192 * M, Placement.LOW, 2 * M)
