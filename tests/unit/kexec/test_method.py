"""Tests for builder/kexec/method.py: which load method, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import LoadError
from builder.kexec.method import (
    FileLoad,
    FileLoadProbe,
    LoadMethod,
    Lockdown,
    MethodChoice,
    choose_method,
    kexec_tools_command,
    parse_lockdown,
    parse_method,
)


@pytest.mark.parametrize(
    ("requested", "lockdown", "method"),
    [
        (LoadMethod.AUTO, None, LoadMethod.SEGMENTS),
        (LoadMethod.AUTO, Lockdown.NONE, LoadMethod.SEGMENTS),
        (LoadMethod.AUTO, Lockdown.INTEGRITY, LoadMethod.FILE),
        (LoadMethod.AUTO, Lockdown.CONFIDENTIALITY, LoadMethod.FILE),
        (LoadMethod.SEGMENTS, Lockdown.CONFIDENTIALITY, LoadMethod.SEGMENTS),
        (LoadMethod.FILE, Lockdown.NONE, LoadMethod.FILE),
    ],
)
def test_choose_method(
    requested: LoadMethod, lockdown: Lockdown | None, method: LoadMethod
) -> None:
    choice = choose_method(requested, lockdown)
    assert choice.method is method
    # Only `auto` explains itself; a method asked for by name needs no reason.
    assert (choice.reason is not None) == (requested is LoadMethod.AUTO)


def test_reasons_name_the_lockdown_state() -> None:
    assert choose_method(LoadMethod.AUTO, Lockdown.CONFIDENTIALITY).reason == (
        "kernel lockdown is 'confidentiality': kexec_load is refused, so the kernel's own "
        "loader (kexec_file_load, signed image) is used"
    )
    assert choose_method(LoadMethod.AUTO, Lockdown.NONE).reason == (
        "kernel lockdown is not active: using kexec_load with our segments"
    )


def test_parse_method_and_lockdown() -> None:
    assert [parse_method(name) for name in ("segments", "file", "auto")] == list(LoadMethod)
    with pytest.raises(LoadError, match="--method: 'Auto' is not one of segments, file, auto"):
        parse_method("Auto")
    assert parse_lockdown("[none] integrity confidentiality") is Lockdown.NONE
    assert parse_lockdown("none integrity [confidentiality]\n") is Lockdown.CONFIDENTIALITY
    assert parse_lockdown("none [paranoid]") is None
    assert parse_lockdown("") is None


def test_kexec_tools_command_quotes_and_maps_the_method() -> None:
    kernel, initrd = Path("/out dir/vmlinuz"), Path("/out dir/initrd.img")
    assert kexec_tools_command(kernel, initrd, "a b", LoadMethod.AUTO) == (
        "kexec -p '/out dir/vmlinuz' --initrd='/out dir/initrd.img' --command-line='a b'"
    )
    assert kexec_tools_command(kernel, initrd, "", LoadMethod.FILE).startswith("kexec -p -s ")


ABSENT = FileLoadProbe(FileLoad.ABSENT, "ENOSYS: the kernel has no CONFIG_KEXEC_FILE")
PRESENT = FileLoadProbe(FileLoad.PRESENT, "probe answered EBADF")


def test_auto_names_what_the_probe_found() -> None:
    choice = choose_method(LoadMethod.AUTO, Lockdown.NONE, ABSENT)
    assert choice == MethodChoice(
        LoadMethod.SEGMENTS,
        "kernel lockdown is not active, kexec_file_load is absent (ENOSYS: the kernel has no "
        "CONFIG_KEXEC_FILE): using kexec_load with our segments",
    )
    assert choose_method(LoadMethod.AUTO, Lockdown.NONE, PRESENT).method is LoadMethod.SEGMENTS
    assert choose_method(LoadMethod.AUTO, Lockdown.INTEGRITY, PRESENT).method is LoadMethod.FILE


def test_auto_under_lockdown_without_kexec_file_load_cannot_load() -> None:
    # Debian's arm64 kernels under Secure Boot: kexec_load refused, kexec_file_load absent.
    with pytest.raises(LoadError, match="this kernel cannot load a crash kernel"):
        choose_method(LoadMethod.AUTO, Lockdown.INTEGRITY, ABSENT)
    # Named explicitly, the method is tried as asked (the kernel gives the errno).
    assert choose_method(LoadMethod.SEGMENTS, Lockdown.INTEGRITY, ABSENT).reason is None
