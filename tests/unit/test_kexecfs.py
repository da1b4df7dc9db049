"""The kexec state files: /sys/kernel/kexec/ (6.19+) first, the flat kexec_* files after."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder.host.service import NO_RESERVATION_CHECK
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


def _seven_x(tmp_path: Path, values: dict[str, str]) -> Path:
    """A 7.x /sys/kernel: the values in kexec/, the flat names links to them (kexec_core.c)."""
    sys_kernel = _sys_kernel(tmp_path, {f"kexec/{name}": text for name, text in values.items()})
    for name in values:
        (sys_kernel / f"kexec_{name}").symlink_to(f"kexec/{name}")
    return sys_kernel


def test_a_7x_kernel_is_read_from_the_kexec_directory(tmp_path: Path) -> None:
    sys_kernel = _seven_x(
        tmp_path,
        {"loaded": "0\n", "crash_loaded": "1\n", "crash_size": "201326592\n",
         "crash_cma_ranges": "7c000000-7fffffff\n"},
    )  # fmt: skip
    status = kexec_status(sys_kernel)
    assert (status.loaded, status.crash_size) == (True, 201326592)
    assert status.cma_ranges == ((0x7C000000, 0x7FFFFFFF),)
    for item in KexecFile:
        assert item.path(sys_kernel) == sys_kernel / "kexec" / item.value


def test_each_value_is_found_where_this_kernel_keeps_it(tmp_path: Path) -> None:
    """Mixed: crash_loaded moved, crash_size still flat, the CMA ranges in their flat file
    (the way `crashkernel=,cma` first reported them)."""
    sys_kernel = _sys_kernel(
        tmp_path,
        {"kexec/crash_loaded": "1\n", "kexec_crash_size": "268435456\n",
         "kexec_crash_cma_ranges": "100000000-103ffffff\n"},
    )  # fmt: skip
    status = kexec_status(sys_kernel)
    assert (status.loaded, status.crash_size) == (True, 268435456)
    assert status.cma_ranges == ((0x100000000, 0x103FFFFFF),)
    assert KexecFile.CRASH_LOADED.path(sys_kernel) == sys_kernel / "kexec/crash_loaded"
    assert KexecFile.CRASH_SIZE.path(sys_kernel) == sys_kernel / "kexec_crash_size"


def test_an_unreadable_new_file_falls_back_to_the_flat_one(tmp_path: Path) -> None:
    sys_kernel = _sys_kernel(tmp_path, {"kexec_crash_size": "134217728\n"})
    (sys_kernel / "kexec/crash_size").mkdir(parents=True)  # there, but read() fails
    assert kexec_status(sys_kernel).crash_size == 134217728


def _service_check(sys_kernel: Path) -> str:
    """What the unit's ExecCondition shell reads for the reservation, run by /bin/sh."""
    script = KexecFile.CRASH_SIZE.shell_read("0", sys_kernel)
    result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_the_service_check_reads_the_same_file_as_python(tmp_path: Path) -> None:
    layouts = {
        "old": _sys_kernel(tmp_path / "old", {"kexec_crash_size": "201326592\n"}),
        "7.x": _seven_x(tmp_path / "new", {"crash_size": "134217728\n"}),
        "mixed": _sys_kernel(
            tmp_path / "mixed", {"kexec/crash_size": "67108864\n", "kexec_crash_size": "1\n"}
        ),
        "none": _sys_kernel(tmp_path / "none", {}),
    }
    read = {name: _service_check(root) for name, root in layouts.items()}
    assert read == {"old": "201326592", "7.x": "134217728", "mixed": "67108864", "none": "0"}
    for name, root in layouts.items():
        assert read[name] == str(kexec_status(root).crash_size or 0), name
    # The installed unit runs this very expression on the real /sys/kernel.
    assert KexecFile.CRASH_SIZE.shell_read("0") in NO_RESERVATION_CHECK
