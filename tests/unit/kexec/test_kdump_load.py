"""kdump-load, the static C loader (builder/kexec/loader/), against the Python planner.

The proof that the segment placement is defined once (issue 20 item 2):
for the same captured inputs, `kdump-load --dry-run` prints the segments
`kdump-build layout` writes, byte for byte (sha256 of each segment's bytes,
and mem, memsz, bufsz, entry, flags). Foreign binaries run under
qemu-user-static (`ArchInfo.qemu.user`). Also: the shipped binaries are what
the sources build, are static and small, and every user mistake is one line.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.arch import Arch, arch_info, host_arch
from builder.image.outputs import write_outputs
from builder.image.pipeline import BuildResult
from builder.kexec.loader import loader_name, shipped_loader
from builder.kexec.plan import PLAN_FILE
from builder.kexecfs import KexecFile
from tests.conftest import run_cli
from tests.support.layouts import build_recipe
from tests.support.paths import DATA, REPO
from tests.support.unprivileged import drop_privileges
from tests.unit.kexec.x86_layout_inputs import SAMPLES, SYSFS

LOADER_ARCHES = (Arch.X86_64, Arch.AARCH64, Arch.RISCV64)
SIZE_LIMIT = 256 * 1024


def run_loader(
    arch: Arch, *args: str | Path, uid_nobody: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the shipped kdump-load of `arch`, under qemu-user when it is not the host's."""
    machine = arch_info(arch).qemu
    assert machine is not None
    prefix = [] if arch is host_arch() else [machine.user]
    return subprocess.run(
        [*prefix, str(shipped_loader(arch)), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=drop_privileges if uid_nobody else None,
    )


def python_segments(outdir: Path, iomem: Path, sysfs: Path, tmp: Path) -> list[str]:
    """`kdump-build layout` of a copy of `outdir`, in kdump-load --dry-run's form."""
    copy = tmp / "python"
    shutil.copytree(outdir, copy, symlinks=True)
    result = run_cli("layout", str(copy), "--iomem", str(iomem), "--sysfs", str(sysfs))
    assert result.returncode == 0, result.stderr
    document = json.loads((copy / "layout.json").read_text())
    lines = [
        f"segment {s['name']} {s['mem']:#x} {s['memsz']:#x} {s['bufsz']:#x} {s['sha256']}"
        for s in document["segments"]
    ]
    return [*lines, f"entry {document['entry']:#x} flags {document['flags']:#x}"]


def loader_segments(arch: Arch, outdir: Path, iomem: Path, sysfs: Path) -> list[str]:
    result = run_loader(arch, "--dry-run", "--iomem", iomem, "--sysfs", sysfs, outdir)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# --- defined once: byte identity on captured guests ----------------------------------


X86_CASES = [(SYSFS / "proc/iomem", SYSFS), *((sample, SYSFS) for sample in SAMPLES)]
# Every other captured guest, with the recipe its architecture's layout tests build.
DEVICE_TREE_RECIPES = {Arch.AARCH64: "qemu-arm64.toml", Arch.RISCV64: "qemu-riscv64.toml"}
DEVICE_TREE_GUESTS = [
    (arch, guest)
    for guest in sorted((DATA / "sysfs").iterdir())
    for arch in DEVICE_TREE_RECIPES
    if guest.name.startswith(f"qemu-{'arm64' if arch is Arch.AARCH64 else arch.value}-")
]


@pytest.fixture(scope="module")
def device_tree_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[Arch, Path]:
    return {
        arch: build_recipe(REPO / "recipes" / recipe, tmp_path_factory.mktemp(arch.value) / "out")
        for arch, recipe in DEVICE_TREE_RECIPES.items()
    }


def test_every_captured_guest_is_compared() -> None:
    guests = sorted(guest.name for _arch, guest in DEVICE_TREE_GUESTS)
    assert sorted([*guests, SYSFS.name]) == sorted(p.name for p in (DATA / "sysfs").iterdir())


@pytest.mark.parametrize("iomem,sysfs", X86_CASES, ids=lambda value: value.name)
def test_x86_64_dry_run_is_the_python_layout(
    outdir: Path, tmp_path: Path, iomem: Path, sysfs: Path
) -> None:
    ours = loader_segments(Arch.X86_64, outdir, iomem, sysfs)
    assert ours == python_segments(outdir, iomem, sysfs, tmp_path)
    assert [line.split()[1] for line in ours[:-1]] == [
        "kernel", "initrd", "boot_params", "cmdline", "elfcorehdr", "purgatory",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "arch,guest", DEVICE_TREE_GUESTS, ids=[guest.name for _arch, guest in DEVICE_TREE_GUESTS]
)
def test_device_tree_dry_run_is_the_python_layout(
    device_tree_builds: dict[Arch, Path], tmp_path: Path, arch: Arch, guest: Path
) -> None:
    outdir = device_tree_builds[arch]
    ours = loader_segments(arch, outdir, guest / "proc/iomem", guest)
    assert ours == python_segments(outdir, guest / "proc/iomem", guest, tmp_path)
    assert [line.split()[1] for line in ours[:-1]] == [
        "kernel", "initrd", "dtb", "purgatory", "elfcorehdr",
    ]  # fmt: skip


def test_the_build_writes_the_plan(outdir: Path) -> None:
    plan = (outdir / PLAN_FILE).read_text().splitlines()
    assert plan[0] == "kdump-load-plan 1"
    assert "arch x86_64" in plan
    manifest = json.loads((outdir / "manifest.json").read_text())
    kernel = next(line.split() for line in plan if line.startswith("kernel "))
    assert kernel[1:] == ["vmlinuz", hex(manifest["kernel"]["size"]), manifest["kernel"]["sha256"]]


# --- the binaries ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", LOADER_ARCHES, ids=lambda arch: arch.value)
def test_shipped_loader_is_static_and_small(arch: Arch) -> None:
    path = shipped_loader(arch)
    size = path.stat().st_size
    assert size <= SIZE_LIMIT, f"{path.name}: {size} bytes, the limit is {SIZE_LIMIT}"
    headers = subprocess.run(["readelf", "-lhd", "-W", str(path)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "EXEC (Executable file)" in headers
    assert "INTERP" not in headers and "Requesting program interpreter" not in headers
    assert "There is no dynamic section in this file." in headers
    result = run_loader(arch, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: kdump-load"), result


def test_shipped_loaders_are_what_the_sources_build(tmp_path: Path) -> None:
    result = subprocess.run([REPO / "scripts" / "build-kdump-load", tmp_path], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for arch in LOADER_ARCHES:
        name = loader_name(arch)
        recorded = shipped_loader(arch).with_name(f"{name}.toolchain").read_text()
        current = (tmp_path / f"{name}.toolchain").read_text()
        assert (tmp_path / name).read_bytes() == shipped_loader(arch).read_bytes(), (
            f"builder/kexec/loader/{name} is stale: run scripts/build-kdump-load "
            f"(shipped with:\n{recorded}built here with:\n{current})"
        )


# --- one-line errors -----------------------------------------------------------------


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("kdump-load: "), result.stderr
    assert expected in result.stderr, result.stderr
    assert result.stdout == ""


def test_wrong_architecture(outdir: Path) -> None:
    result = run_loader(Arch.AARCH64, "--dry-run", "--iomem", SYSFS / "proc/iomem",
                        "--sysfs", SYSFS, outdir)  # fmt: skip
    assert_one_line(result, f"{outdir / PLAN_FILE}: the build is for x86_64, this kdump-load is "
                    "for aarch64 (use kdump-load-x86_64)")  # fmt: skip


@pytest.mark.parametrize("name", ["vmlinuz", "initrd.img", "cmdline.txt"])
def test_output_that_does_not_match_the_manifest(outdir: Path, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "out"
    shutil.copytree(outdir, copy)
    size = (copy / name).stat().st_size
    with open(copy / name, "ab") as handle:
        handle.write(b"x")
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", SYSFS / "proc/iomem",
                        "--sysfs", SYSFS, copy)  # fmt: skip
    assert_one_line(result, f"{copy / name}: does not match manifest.json ({size + 1} bytes, "
                    f"recorded {size}; truncated or replaced: build again)")  # fmt: skip


def test_same_size_replacement_is_refused(outdir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(outdir, copy)
    data = bytearray((copy / "initrd.img").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "initrd.img").write_bytes(bytes(data))
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", SYSFS / "proc/iomem",
                        "--sysfs", SYSFS, copy)  # fmt: skip
    assert_one_line(result, f"{copy / 'initrd.img'}: does not match manifest.json")


def test_no_crash_region(outdir: Path, tmp_path: Path) -> None:
    iomem = tmp_path / "iomem"
    lines = (SYSFS / "proc/iomem").read_text().splitlines(keepends=True)
    iomem.write_text("".join(line for line in lines if "Crash kernel" not in line))
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", iomem, "--sysfs", SYSFS, outdir)
    assert_one_line(result, f"{iomem}: no 'Crash kernel' range (boot with crashkernel=)")


def test_iomem_read_without_root_is_refused(outdir: Path, tmp_path: Path) -> None:
    iomem = tmp_path / "iomem"
    text = (SYSFS / "proc/iomem").read_text()
    iomem.write_text("".join(c if c in " :-\n" or not c.isalnum() else "0" for c in text))
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", iomem, "--sysfs", SYSFS, outdir)
    assert_one_line(result, "every address is zero; read it as root")


def test_not_root(outdir: Path) -> None:
    result = run_loader(Arch.X86_64, outdir, uid_nobody=True)
    assert_one_line(result, "not root: loading a crash kernel needs root (CAP_SYS_BOOT)")


def test_damaged_plan(outdir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(outdir, copy)
    plan = (copy / PLAN_FILE).read_text().replace("bzimage-align 0x", "bzimage-align zz", 1)
    (copy / PLAN_FILE).write_text(plan)
    number = next(i for i, line in enumerate(plan.splitlines(), 1) if "bzimage-align" in line)
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", SYSFS / "proc/iomem",
                        "--sysfs", SYSFS, copy)  # fmt: skip
    assert_one_line(
        result, f"{copy / PLAN_FILE}: line {number}: bzimage-align: expected a 0x number"
    )


def test_kcore_of_another_machine(outdir: Path, tmp_path: Path) -> None:
    sysfs = tmp_path / "sysfs"
    shutil.copytree(SYSFS, sysfs)
    shutil.copy(DATA / "sysfs/qemu-arm64-1g-1cpu-192m/proc/kcore", sysfs / "proc/kcore")
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", SYSFS / "proc/iomem",
                        "--sysfs", sysfs, outdir)  # fmt: skip
    assert_one_line(result, f"{sysfs / 'proc/kcore'}: byte 0x12: e_machine 183, the plan is for 62")


def test_backup_region_is_refused(default_build: BuildResult, tmp_path: Path) -> None:
    """A build whose recipe asks for `kernel.backup_region = true` (x86 kernels before
    5.5): its outputs written by the build's own writer, the recipe the only change."""
    recipe = default_build.recipe
    kernel = dataclasses.replace(recipe.kernel, backup_region=True)
    build = dataclasses.replace(default_build, recipe=dataclasses.replace(recipe, kernel=kernel))
    out = tmp_path / "out"
    write_outputs(build, out)
    assert "backup 0x1" in (out / PLAN_FILE).read_text().splitlines()
    result = run_loader(Arch.X86_64, "--dry-run", "--iomem", SYSFS / "proc/iomem",
                        "--sysfs", SYSFS, out)  # fmt: skip
    expected = (f"{out / PLAN_FILE}: backup 0x1: the backup region (kernel.backup_region) "
                "is not supported by kdump-load; use kdump-build load")  # fmt: skip
    assert_one_line(result, expected)
    assert result.stderr == f"kdump-load: {expected}\n"


def test_captured_inputs_only_with_dry_run(outdir: Path) -> None:
    result = run_loader(Arch.X86_64, "--iomem", SYSFS / "proc/iomem", outdir)
    assert_one_line(result, "--iomem and --sysfs describe another machine: only with --dry-run")


def test_status_reads_the_kernels_flag() -> None:
    # The 6.19 file first, the flat one after (builder/kexecfs.py); some machines have neither.
    flag = KexecFile.CRASH_LOADED.read()
    result = run_loader(Arch.X86_64, "--status")
    if flag is None:
        assert_one_line(result, "/sys/kernel/kexec_crash_loaded: No such file or directory")
        return
    assert result.returncode == 0, result.stderr
    loaded = flag.strip() == "1"
    assert result.stdout == ("crash kernel loaded\n" if loaded else "no crash kernel loaded\n")


def test_unload_needs_root() -> None:
    result = run_loader(Arch.X86_64, "--unload", uid_nobody=True)
    assert_one_line(result, "not root: loading a crash kernel needs root (CAP_SYS_BOOT)")
