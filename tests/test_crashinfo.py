"""/proc/kcore's program headers, read through ElfFile and checked against readelf."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from builder.arch import Arch
from builder.errors import LayoutError
from builder.kexec.crashinfo import KCORE, KernelText, parse_kcore_headers

SYSFS = Path(__file__).parent / "data" / "sysfs" / "qemu-1g-crashkernel-192m"


def _loads_by_readelf(path: Path) -> list[tuple[int, int, int]]:
    """(vaddr, paddr, memsz) of every PT_LOAD, as readelf prints them."""
    text = subprocess.run(
        ["readelf", "-l", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [
        (int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16))
        for m in re.finditer(
            r"^\s+LOAD\s+0x[0-9a-f]+ (0x[0-9a-f]+) (0x[0-9a-f]+) 0x[0-9a-f]+ (0x[0-9a-f]+)",
            text,
            re.MULTILINE,
        )
    ]


def test_captured_kcore_matches_readelf() -> None:
    path = SYSFS / KCORE
    text, page_offset = parse_kcore_headers(path.read_bytes(), str(path))
    loads = _loads_by_readelf(path)
    # mm.rst: the kernel image lives in [__START_KERNEL_map, MODULES_VADDR).
    in_window = [load for load in loads if 0xFFFF_FFFF_8000_0000 <= load[0] < 0xFFFF_FFFF_C000_0000]
    assert text == KernelText(*in_window[0])
    direct = [vaddr - paddr for vaddr, paddr, _ in loads if (vaddr, paddr, _) not in in_window
              and paddr != (1 << 64) - 1 and vaddr >= paddr]  # fmt: skip
    assert page_offset == direct[0]


def test_arch_defaults_to_the_kernels_own() -> None:
    data = (SYSFS / KCORE).read_bytes()
    assert parse_kcore_headers(data, "kcore") == parse_kcore_headers(data, "kcore", Arch.X86_64)
    # An architecture whose kcore shows no kernel text window: the text is found another way.
    text, page_offset = parse_kcore_headers(data, "kcore", Arch.AARCH64)
    assert text is None and page_offset is not None


@pytest.mark.parametrize("cut", [0, 10, 63, 64, 100, 64 + 56 * 2 + 3])
def test_truncated_kcore_headers_are_layout_errors(cut: int) -> None:
    data = (SYSFS / KCORE).read_bytes()[:cut]
    with pytest.raises(LayoutError, match=r"^kcore: truncated at byte 0x[0-9a-f]+: expected "):
        parse_kcore_headers(data, "kcore")
