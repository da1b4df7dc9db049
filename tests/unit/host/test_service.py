"""The unit and the kernel hooks, run as systemd and Debian's kernel packages run them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder.host import service
from builder.host.managed import MARKER
from builder.kexecfs import KexecFile, read_int


def run_hook(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    hook = tmp_path / "hook"
    hook.write_text(text)
    hook.chmod(0o755)
    return subprocess.run([str(hook), *args], capture_output=True, text=True, check=False)


def test_a_failing_build_never_fails_the_kernel_install(tmp_path: Path) -> None:
    for text in (service.postinst_hook_text("false"), service.postrm_hook_text("false")):
        result = run_hook(tmp_path, text, "6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-9-amd64")
        assert result.returncode == 0
        assert "6.1.0-9-amd64" in result.stderr
    result = run_hook(tmp_path, service.install_plugin_text("false"), "add", "6.1.0-9-amd64", "/e")
    assert result.returncode == 0 and "no capture built for kernel 6.1.0-9-amd64" in result.stderr


def test_hooks_pass_the_version(tmp_path: Path) -> None:
    record = tmp_path / "args"
    command = f"{tmp_path}/record"
    (tmp_path / "record").write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    (tmp_path / "record").chmod(0o755)
    run_hook(tmp_path, service.postinst_hook_text(command), "6.1.0-9-amd64", "/boot/vmlinuz-x")
    run_hook(tmp_path, service.install_plugin_text(command), "add", "6.2", "/e", "/usr/lib/k")
    run_hook(tmp_path, service.install_plugin_text(command), "remove", "6.2", "/e")
    assert record.read_text().splitlines() == [
        "kernel-installed 6.1.0-9-amd64",
        "kernel-installed 6.2 --image /usr/lib/k",
        "kernel-removed 6.2",
    ]


def test_unit_loads_at_boot_and_unloads_on_stop() -> None:
    text = service.unit_text("/opt/kb/bin/kdump-build")
    assert MARKER in text
    assert "ExecStart=/opt/kb/bin/kdump-build boot\n" in text
    assert "ExecStop=/opt/kb/bin/kdump-build unload\n" in text
    assert "RemainAfterExit=yes" in text and "WantedBy=multi-user.target" in text


def test_the_no_reservation_check_as_systemd_runs_it(tmp_path: Path) -> None:
    """ExecCondition's $$ is systemd's escape for $: unescaped, the shell says why it skips."""
    line = service.NO_RESERVATION_CHECK.replace("$$", "$")
    command = line.removeprefix("/bin/sh -c ").strip("'")
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    reserved = bool(read_int(KexecFile.CRASH_SIZE))  # where builder/kexecfs.py reads it
    assert result.returncode == (0 if reserved else 1)
    if not reserved:
        assert "no crash reservation" in result.stdout
