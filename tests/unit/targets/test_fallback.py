"""Fallback dump targets: `[[dump.fallback]]` tables, and what the capture is told of them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.image import runtime
from builder.recipe.model import DumpSettings
from builder.recipe.parse import parse_recipe
from builder.targets import target_kind

NFS_THEN_DISK = """\
[source]
root = "/"
[dump]
target = "nfs"
nfs = "10.0.2.2:/kdump"
path = "/dumps"
device_timeout = 5
[[dump.fallback]]
target = "local"
device = "UUID=5f1b6c0e-7d0a-4c41-9d7e-2b1f0a7c9e11"
path = "/var/crash"
"""


def dump_of(text: str) -> DumpSettings:
    return parse_recipe(text, Path("r.toml")).dump


def test_attempts_are_in_order_with_the_shared_settings() -> None:
    attempts = dump_of(NFS_THEN_DISK).attempts()
    assert [attempt.target for attempt in attempts] == [target_kind("nfs"), target_kind("local")]
    assert [attempt.device_timeout for attempt in attempts] == [5, 5]
    assert all(not attempt.fallback for attempt in attempts)
    assert dump_of(NFS_THEN_DISK).to_json()["fallback"][0]["path"] == "/var/crash"


def test_each_target_is_a_function_in_kdump_conf(tmp_path: Path) -> None:
    config = tmp_path / "kdump.conf"
    config.write_bytes(runtime.render_config(dump_of(NFS_THEN_DISK)))
    script = (
        f". {config}; echo $KDUMP_TARGET_COUNT $KDUMP_TARGET; target_2; "
        "echo $KDUMP_TARGET $KDUMP_DEVICE $KDUMP_PATH; target_1; echo $KDUMP_TARGET $KDUMP_PATH"
    )
    result = subprocess.run(["dash", "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        "2 nfs",
        "local UUID=5f1b6c0e-7d0a-4c41-9d7e-2b1f0a7c9e11 /var/crash",
        "nfs /dumps",
    ]


def test_one_target_is_one_attempt(tmp_path: Path) -> None:
    dump = dump_of('[source]\nroot = "/"\n[dump]\ndevice = "LABEL=kdump"\n')
    config = tmp_path / "kdump.conf"
    config.write_bytes(runtime.render_config(dump))
    result = subprocess.run(
        ["dash", "-c", f". {config}; echo $KDUMP_TARGET_COUNT; type target_1 estimate_dump"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.splitlines()[0] == "1"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('target = "local"\n', "dump.fallback[0].device: required when dump.target is local"),
        ('target = "local"\ndevice = "sda"\n', "dump.fallback[0].device: 'sda' is not LABEL="),
        ('target = "local"\ndevice = "LABEL=x"\nlevel = 3\n', "dump.fallback[0].level: unknown"),
        ('target = "floppy"\n', "dump.fallback[0].target: 'floppy' is not one of"),
        ('device = "LABEL=x"\n', "dump.fallback: item 0: give its target"),
        ('target = "raw"\ndevice = "SERIAL=kdump-raw"\nnfs = "1.2.3.4:/x"\n',
         "dump.fallback[0].nfs: only used when dump.target is nfs"),
    ],
)  # fmt: skip
def test_bad_fallback_tables_name_the_key(table: str, message: str) -> None:
    text = f'[source]\nroot = "/"\n[dump]\ndevice = "LABEL=a"\n[[dump.fallback]]\n{table}'
    with pytest.raises(RecipeError, match=r"^r\.toml: ") as error:
        dump_of(text)
    assert message in str(error.value)


def test_fallback_must_be_tables() -> None:
    with pytest.raises(RecipeError, match=r"dump\.fallback: expected an array of tables"):
        dump_of('[source]\nroot = "/"\n[dump]\ndevice = "LABEL=a"\nfallback = ["local"]\n')
