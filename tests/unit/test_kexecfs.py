"""The kexec state files: /sys/kernel/kexec/ (6.19+) first, the flat kexec_* files after."""

from __future__ import annotations

from pathlib import Path

from builder.kexec.syscalls import kexec_status
from builder.kexecfs import KexecFile, read_cma_ranges


def _sys_kernel(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_kernel_before_6_19_has_only_the_flat_files(tmp_path: Path) -> None:
    sys_kernel = _sys_kernel(
        tmp_path, {"kexec_crash_loaded": "1\n", "kexec_crash_size": "201326592\n"}
    )
    status = kexec_status(sys_kernel)
    assert (status.loaded, status.crash_size, status.cma_ranges) == (True, 201326592, None)


def test_the_kexec_directory_wins_over_the_deprecated_files(tmp_path: Path) -> None:
    """Both present (6.19+): the values come from /sys/kernel/kexec/, never the old ones."""
    sys_kernel = _sys_kernel(
        tmp_path,
        {
            "kexec_crash_loaded": "0\n",
            "kexec_crash_size": "1\n",
            "kexec/crash_loaded": "1\n",
            "kexec/crash_size": "134217728\n",
            "kexec/crash_cma_ranges": "7c000000-7fffffff\n100000000-103ffffff\n",
        },
    )
    status = kexec_status(sys_kernel)
    assert (status.loaded, status.crash_size) == (True, 134217728)
    assert status.cma_ranges == ((0x7C000000, 0x7FFFFFFF), (0x100000000, 0x103FFFFFF))
    assert KexecFile.CRASH_SIZE.path(sys_kernel) == sys_kernel / "kexec/crash_size"


def test_no_kexec_support_reads_as_unknown(tmp_path: Path) -> None:
    status = kexec_status(tmp_path)
    assert (status.loaded, status.crash_size, status.cma_ranges) == (None, None, None)
    assert KexecFile.CRASH_SIZE.path(tmp_path) == tmp_path / "kexec_crash_size"


def test_an_empty_cma_file_means_no_cma_ranges(tmp_path: Path) -> None:
    sys_kernel = _sys_kernel(tmp_path, {"kexec/crash_cma_ranges": ""})
    assert read_cma_ranges(sys_kernel) == ()
