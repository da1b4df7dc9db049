"""The firmware output (`firmware.loader`): the loader, the busybox boot script and the
systemd unit beside the capture, written atomically, the same bytes every time."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from builder.arch import ARCHES, Arch
from builder.atomic import MARKER
from builder.binfmt.elf import PT_INTERP, ElfFile
from builder.errors import ImageError, RecipeError
from builder.image import firmware
from builder.image.outputs import output_files, write_outputs
from builder.image.pipeline import BuildResult
from builder.kexec.loader import shipped_loader
from builder.recipe.model import FirmwareSettings
from builder.recipe.parse import load_recipe, parse_recipe
from builder.recipe.settings import FIRMWARE_DIRECTORY
from tests.conftest import run_cli
from tests.support.paths import REPO
from tests.support.recipes import write_recipe

MINIMAL = '[source]\nroot = "/"\n[dump]\ndevice = "LABEL=kdump"\n'
# Stands in for the C loader in these tests of the output only (its own tests build it).
FAKE_LOADER = b"\x7fELF not really a loader\n"
DEVICE_DIR = "/opt/crash/capture"


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> dict[Arch, bytes]:
    loaders = {arch: FAKE_LOADER + arch.value.encode() for arch in Arch}
    monkeypatch.setattr(firmware, "shipped_loader", loaders.get)
    return loaders


def _with_firmware(build: BuildResult, directory: str = DEVICE_DIR) -> BuildResult:
    settings = FirmwareSettings(loader=True, directory=directory)
    return replace(build, recipe=replace(build.recipe, firmware=settings))


def test_firmware_files_sit_beside_the_capture(
    default_build: BuildResult, tmp_path: Path, shipped: dict[Arch, bytes]
) -> None:
    build = _with_firmware(default_build)
    outdir = tmp_path / "out"
    assert write_outputs(build, outdir) is True
    names = sorted(path.name for path in outdir.iterdir())
    capture = [MARKER, "cmdline.txt", "fit.json", "initrd.img", "manifest.json", "vmlinuz",
               "kdump-load.plan"]  # fmt: skip
    assert names == sorted([*capture, "kdump-load", "S90kdump-load", "kdump-load.service"])
    assert (outdir / "kdump-load").read_bytes() == shipped[build.recipe.target.arch]
    modes = {name: (outdir / name).stat().st_mode & 0o7777
             for name in ("kdump-load", "S90kdump-load", "kdump-load.service")}  # fmt: skip
    assert modes == {"kdump-load": 0o755, "S90kdump-load": 0o755, "kdump-load.service": 0o644}
    recorded = json.loads((outdir / "manifest.json").read_text())["firmware"]
    assert recorded["directory"] == DEVICE_DIR
    assert set(recorded["files"]) == {"kdump-load", "S90kdump-load", "kdump-load.service"}
    # Deterministic: the same build writes the same bytes, so nothing is swapped in again.
    assert write_outputs(build, outdir) is False
    assert output_files(build) == output_files(_with_firmware(default_build))


def test_no_firmware_files_unless_asked(default_build: BuildResult, shipped: object) -> None:
    files = output_files(default_build)
    assert not {"kdump-load", "S90kdump-load", "kdump-load.service"} & set(files)
    assert "firmware" not in json.loads(files["manifest.json"][0])


def test_the_boot_script_runs_the_loader_on_the_device_directory(tmp_path: Path) -> None:
    """As busybox init's rcS and rcK call it, with a loader that records its arguments."""
    device = tmp_path / "dev-dir"
    device.mkdir()
    calls = tmp_path / "calls"
    loader = device / "kdump-load"
    loader.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" != fail ] \n')
    loader.chmod(0o755)
    script = tmp_path / "S90kdump-load"
    script.write_text(firmware.boot_script(str(device)))
    script.chmod(0o755)
    for action in ("start", "stop", "status", "restart"):
        assert subprocess.run([str(script), action], check=False).returncode == 0
    assert calls.read_text().splitlines() == [
        str(device), "--unload", "--status", str(device)
    ]  # fmt: skip
    usage = subprocess.run([str(script), "bogus"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    loader.write_text("#!/bin/sh\necho 'kdump-load: no crash region' >&2\nexit 1\n")
    failed = subprocess.run([str(script), "start"], capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        "kdump-load: no crash region", "S90kdump-load: the crash capture is not armed"
    ]  # fmt: skip


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own checker reads the unit in a root holding the device directory."""
    root = tmp_path / "root"
    device = root / DEVICE_DIR.lstrip("/")
    device.mkdir(parents=True)
    (device / "kdump-load").write_bytes(b"#!/bin/sh\n")
    (device / "kdump-load").chmod(0o755)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "kdump-load.service").write_text(firmware.unit_text(DEVICE_DIR))
    verify = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no",
         str(units / "kdump-load.service")],
        capture_output=True, text=True, check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )  # fmt: skip
    # An unknown key or section is only a warning (exit 0): no output at all is the pass.
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr


def test_a_missing_loader_names_file_and_key_and_keeps_the_output(
    default_build: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outdir = tmp_path / "out"
    write_outputs(default_build, outdir)
    before = {path.name: path.read_bytes() for path in outdir.iterdir()}
    monkeypatch.setattr(firmware, "shipped_loader", lambda arch: None)
    with pytest.raises(ImageError) as caught:
        write_outputs(_with_firmware(default_build), outdir)
    message = str(caught.value)
    assert message == (
        f"{default_build.recipe.path}: firmware.loader: this kdump-build ships no "
        f"{REPO}/builder/kexec/loader/kdump-load-x86_64"
    )
    assert {path.name: path.read_bytes() for path in outdir.iterdir()} == before


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('loader = "yes"', "r.toml: firmware.loader: expected a boolean, got a string"),
        ('loader = true\ndirectory = "usr/lib/k"',
         "r.toml: firmware.directory: 'usr/lib/k' is not an absolute path"),
        ('loader = true\ndirectory = "/opt/my dumps"',
         "r.toml: firmware.directory: '/opt/my dumps' is not a plain absolute path "
         "(letters, digits, /._+-)"),
        ('loader = true\ndirectory = "/opt/$HOME"',
         "r.toml: firmware.directory: '/opt/$HOME' is not a plain absolute path "
         "(letters, digits, /._+-)"),
        ('loader = true\ndirectory = "/opt/../etc"',
         "r.toml: firmware.directory: '/opt/../etc' is not a plain absolute path "
         "(letters, digits, /._+-)"),
        ('directory = "/opt/k"', "r.toml: firmware.directory: only used when firmware.loader "
         "is true"),
        ("loaders = true", "r.toml: firmware.loaders: unknown key (known in [firmware]: "
         "loader, directory)"),
    ],
)  # fmt: skip
def test_bad_firmware_keys_name_file_and_key(table: str, message: str) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(f"{MINIMAL}[firmware]\n{table}\n", Path("r.toml"))
    assert str(caught.value) == message


@pytest.mark.parametrize("name", ["qemu-x86_64", "qemu-arm64", "qemu-riscv64"])
def test_the_output_carries_the_shipped_loader_of_the_recipes_arch(name: str) -> None:
    """The real prebuilt kdump-load: the recipe's architecture, statically linked."""
    recipe = load_recipe(REPO / "recipes" / f"{name}.toml")
    recipe = replace(recipe, firmware=FirmwareSettings(loader=True, directory=DEVICE_DIR))
    data, mode = firmware.firmware_files(recipe)["kdump-load"]
    assert mode == 0o755
    assert data == shipped_loader(recipe.target.arch).read_bytes()
    elf = ElfFile(data, "kdump-load")
    assert elf.machine == ARCHES[recipe.target.arch].elf_machine
    assert not [header for header in elf.program_headers if header.type == PT_INTERP]


def test_the_recipe_in_docs_firmware_parses() -> None:
    """docs/firmware.md's recipe is a valid recipe that asks for the firmware output."""
    text = (REPO / "docs" / "firmware.md").read_text()
    blocks = re.findall(r"^```toml\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1
    recipe = parse_recipe(blocks[0], REPO / "docs" / "board.toml")
    assert recipe.firmware == FirmwareSettings(loader=True, directory=FIRMWARE_DIRECTORY)
    assert recipe.source.root and not recipe.source.packages


def test_the_build_command_writes_the_firmware_output_and_says_where_it_goes(
    tmp_path: Path,
) -> None:
    recipe = write_recipe(tmp_path / "board.toml",
                          {"firmware": {"loader": True, "directory": DEVICE_DIR}})  # fmt: skip
    outdir = tmp_path / "out"
    built = run_cli(str(recipe), "-o", str(outdir))
    assert built.returncode == 0, built.stderr
    assert (
        f"  firmware kdump-load, S90kdump-load, kdump-load.service: copy {outdir}/ to "
        f"{DEVICE_DIR} in the image"
    ) in built.stdout.splitlines()
    assert (outdir / "kdump-load").read_bytes() == shipped_loader(Arch.X86_64).read_bytes()
    assert f"DIR={DEVICE_DIR}\n" in (outdir / "S90kdump-load").read_text()
    assert (
        f"ExecStart={DEVICE_DIR}/kdump-load {DEVICE_DIR}\n"
        in (outdir / "kdump-load.service").read_text()
    )
