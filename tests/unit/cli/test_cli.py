"""The command line as a user meets it: real builds, bad input, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder.image.fetch import FetchedPackage
from builder.kexecfs import KexecFile
from tests.conftest import run_cli
from tests.support import recipes
from tests.support.paths import DEFAULT_RECIPE, REPO

MINIMAL_DUMP = '[dump]\ndevice = "LABEL=kdump"\n'


def assert_user_error(result: object, *fragments: str) -> str:
    import subprocess

    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return str(lines[0])


@pytest.fixture()
def previous_output(tmp_path: Path) -> Path:
    """An output directory from an earlier build, which a failed build must leave alone."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "initrd.img").write_bytes(b"previous")
    return outdir


def assert_untouched(outdir: Path) -> None:
    assert (
        sorted(path.name for path in outdir.parent.iterdir() if path.name.startswith(".out")) == []
    )
    assert [path.name for path in outdir.iterdir()] == ["initrd.img"]
    assert (outdir / "initrd.img").read_bytes() == b"previous"


def write_recipe(tmp_path: Path, text: str) -> Path:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    return recipe


def test_unknown_key(tmp_path: Path, previous_output: Path) -> None:
    recipe = write_recipe(tmp_path, MINIMAL_DUMP + 'colour = "blue"\n[source]\nroot = "/"\n')
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(result, f"{recipe}: dump.colour: unknown key")
    assert_untouched(previous_output)


def test_wrong_type(tmp_path: Path, previous_output: Path) -> None:
    recipe = write_recipe(tmp_path, MINIMAL_DUMP + '[source]\nroot = "/"\n[initrd]\nmodules = 3\n')
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(result, f"{recipe}: initrd.modules: expected an array of strings")
    assert_untouched(previous_output)


def test_missing_kernel_file(tmp_path: Path, previous_output: Path) -> None:
    sysroot = tmp_path / "sysroot"
    (sysroot / "boot").mkdir(parents=True)
    recipe = write_recipe(tmp_path, MINIMAL_DUMP + f'[source]\nroot = "{sysroot}"\n')
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(result, f"{recipe}: kernel.image: '/boot/vmlinuz-*' must match exactly one")
    assert_untouched(previous_output)


def test_package_file_that_is_not_an_archive(tmp_path: Path, previous_output: Path) -> None:
    (tmp_path / "kernel.deb").write_text("not a package")
    recipe = write_recipe(tmp_path, MINIMAL_DUMP + '[source]\npackage_files = ["kernel.deb"]\n')
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(result, "kernel.deb: not a readable package archive")
    assert_untouched(previous_output)


def test_missing_package_file(tmp_path: Path, previous_output: Path) -> None:
    recipe = write_recipe(tmp_path, MINIMAL_DUMP + '[source]\npackage_files = ["gone.deb"]\n')
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(result, f"{recipe}: source.package_files: item 0:", "gone.deb not found")
    assert_untouched(previous_output)


def default_recipe_on_files(tmp_path: Path, packages: list[FetchedPackage]) -> str:
    """The default recipe's text, reading the cached package files instead of fetching."""
    files = [str(package.path) for package in packages]
    return recipes.recipe_text({"source": {"packages": recipes.DELETE, "package_files": files}})


def test_module_that_does_not_exist(
    tmp_path: Path, previous_output: Path, default_packages: list[FetchedPackage]
) -> None:
    text = default_recipe_on_files(tmp_path, default_packages)
    recipe = write_recipe(tmp_path, text.replace('"ext4"]', '"ext4", "nosuchmod"]'))
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(result, "initrd.modules: module 'nosuchmod' not found for kernel")
    assert_untouched(previous_output)


def test_symlink_leaving_the_root(
    tmp_path: Path, previous_output: Path, default_packages: list[FetchedPackage]
) -> None:
    sysroot = tmp_path / "sysroot"
    (sysroot / "boot").mkdir(parents=True)
    kernel = next(p.path for p in default_packages if p.name.startswith("linux-image"))
    from builder.image.packages import PackageRoot

    root = PackageRoot([kernel])
    (image,) = root.glob("/boot/vmlinuz-*")
    (sysroot / image.lstrip("/")).write_bytes(root.read_bytes(image))
    (sysroot / "bin").mkdir()
    (sysroot / "bin/busybox").symlink_to("../../../../../../../bin/busybox")
    recipe = write_recipe(
        tmp_path,
        MINIMAL_DUMP + 'collector = "copy"\n'
        f'[source]\nroot = "{sysroot}"\n[initrd]\nbinaries = []\n',
    )
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(
        result,
        "initrd.busybox:",
        "symlink /bin/busybox -> ../../../../../../../bin/busybox",
        "leads outside the root",
    )
    assert_untouched(previous_output)


def test_build_is_reproducible_across_directories(tmp_path: Path) -> None:
    """Two builds from different working directories give byte-identical outputs."""
    first, second = tmp_path / "a", tmp_path / "b"
    (tmp_path / "cwd").mkdir()
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(first), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(second), "-q", cwd=tmp_path / "cwd")
    assert result.returncode == 0, result.stderr
    for name in ("initrd.img", "vmlinuz", "cmdline.txt", "manifest.json", "fit.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert summary["initrd_size"] == (first / "initrd.img").stat().st_size

    manifest = json.loads((first / "manifest.json").read_text())
    paths = {member["path"]: member for member in manifest["members"]}
    assert paths["/init"]["mode"] == "0755"
    assert paths["/usr/bin/makedumpfile"]["origin"].startswith("makedumpfile_")
    assert paths["/bin/sh"]["target"] == "/bin/busybox"

    listing = run_cli("inspect", str(first / "initrd.img"), "--json")
    assert listing.returncode == 0, listing.stderr
    inspected = {entry["path"]: entry for entry in json.loads(listing.stdout)}
    assert set(inspected) == set(paths)
    assert inspected["/dev/console"]["rdev"] == [5, 1]

    # A rebuild replaces the old output whole and leaves no staging directory.
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(first), "-q")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b", "cwd"]
    shutil.rmtree(second)


def test_inspect_corrupt_file(tmp_path: Path) -> None:
    broken = tmp_path / "initrd.img"
    broken.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    assert_user_error(
        run_cli("inspect", str(broken)),
        f"{broken}: neither an initrd (byte 0x0: zstd data is truncated",
        "nor a kernel image",
    )
    assert_user_error(run_cli("inspect", str(tmp_path / "missing.img")), "missing.img")


def test_usage_error_exits_2() -> None:
    result = run_cli("inspect")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_inspect_kernel_image(tmp_path: Path, default_build: object) -> None:
    import struct

    from builder.image.pipeline import BuildResult

    assert isinstance(default_build, BuildResult)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(default_build.kernel_bytes)
    result = run_cli("inspect", str(kernel), "--json")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    data = default_build.kernel_bytes
    # Documentation/arch/x86/boot.rst: init_size at 0x260, kernel_alignment at 0x230.
    assert described["format"] == "bzImage" and described["arch"] == "x86_64"
    assert described["memory_size"] == struct.unpack_from("<I", data, 0x260)[0]
    assert described["alignment"] == struct.unpack_from("<I", data, 0x230)[0]
    assert described["version"] == default_build.kernel_version
    truncated = tmp_path / "truncated"
    truncated.write_bytes(data[:1000])
    assert_user_error(run_cli("inspect", str(truncated)), f"{truncated}: truncated at byte")


def test_build_ignores_home_umask_and_unset_epoch(tmp_path: Path) -> None:
    """Same inputs, another HOME, umask, working directory, no SOURCE_DATE_EPOCH: same bytes."""
    import os
    import subprocess
    import sys

    from builder.image.cache import default_cache_dir

    first, second = tmp_path / "a", tmp_path / "b"
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    base_env = {key: value for key, value in os.environ.items() if key != "SOURCE_DATE_EPOCH"}
    base_env["KDUMP_BUILD_CACHE"] = str(default_cache_dir())
    result = subprocess.run(
        [sys.executable, "-m", "builder.cli", str(DEFAULT_RECIPE), "-o", str(first), "-q"],
        env=base_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    other_env = {
        **base_env,
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(DEFAULT_RECIPE.parents[1]),
    }
    command = f"umask 077 && exec {sys.executable} -m builder.cli {DEFAULT_RECIPE} -o {second} -q"
    result = subprocess.run(
        ["sh", "-c", command],
        env=other_env,
        cwd=tmp_path / "cwd",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in ("initrd.img", "vmlinuz", "cmdline.txt", "manifest.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert (second / name).stat().st_mode & 0o777 == 0o644
    diff = run_cli("diff", str(first / "initrd.img"), str(second / "initrd.img"))
    assert diff.returncode == 0 and diff.stdout == ""
    assert diff.stderr.strip() == "0 added, 0 removed, 0 changed"


def test_diff_and_inspect_on_real_builds(
    tmp_path: Path, default_packages: list[FetchedPackage]
) -> None:
    modules = ["virtio_pci", "virtio_blk", "ext4", "fs-vfat"]
    changes = {"initrd": {"modules": modules, "compression": "lz4", "compression_level": 9}}
    variant = recipes.write_recipe(tmp_path / "variant.toml", changes)
    for recipe, out in ((DEFAULT_RECIPE, "a"), (variant, "b")):
        result = run_cli(str(recipe), "-o", str(tmp_path / out), "-q")
        assert result.returncode == 0, result.stderr
    result = run_cli("diff", str(tmp_path / "a/initrd.img"), str(tmp_path / "b/initrd.img"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The kernel's version, by another route: the name of the package it came in.
    (kernel_package,) = [p.name for p in default_packages if p.name.startswith("linux-image-")]
    version = kernel_package.removeprefix("linux-image-")
    assert f"+ /lib/modules/{version}/kernel/fs/fat/vfat.ko" in lines
    assert any(line.startswith("~ /etc/kdump/modules (size ") for line in lines)
    assert result.stderr.strip() == "3 added, 0 removed, 1 changed"
    as_json = json.loads(
        run_cli(
            "diff", str(tmp_path / "a/initrd.img"), str(tmp_path / "b/initrd.img"), "--json"
        ).stdout
    )
    assert {change["status"] for change in as_json} == {"added", "changed"}
    listing = run_cli("inspect", str(tmp_path / "b/initrd.img"), "--json")
    assert listing.returncode == 0, listing.stderr
    assert any(entry["path"].endswith("/vfat.ko") for entry in json.loads(listing.stdout))


def test_diff_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "nope.img"
    broken = tmp_path / "broken.img"
    broken.write_bytes(bytes.fromhex("02214c18") + b"\x10\x00\x00\x00abc")
    assert_user_error(run_cli("diff", str(missing), str(missing)), f"{missing}:")
    assert_user_error(
        run_cli("diff", str(broken), str(broken)),
        f"{broken}: byte 0x0: lz4 chunk of 16 bytes at +0x4 runs past the end",
    )


def sysroot_with_kernels(tmp_path: Path, **images: bytes) -> Path:
    sysroot = tmp_path / "sysroot"
    (sysroot / "boot").mkdir(parents=True)
    for name, data in images.items():
        (sysroot / "boot" / name).write_bytes(data)
    return sysroot


def test_reuse_of_a_non_relocatable_kernel(tmp_path: Path, previous_output: Path) -> None:
    from tests.support.synthetic import bzimage

    sysroot = sysroot_with_kernels(tmp_path, **{"vmlinuz-6.9.0-synth": bzimage(relocatable=False)})
    recipe = write_recipe(tmp_path, MINIMAL_DUMP + f'[source]\nroot = "{sysroot}"\n')
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(result, f"{recipe}: kernel.mode:", "needs a relocatable kernel")
    assert_untouched(previous_output)


def test_dedicated_kernel_outside_the_reservation(tmp_path: Path, previous_output: Path) -> None:
    from tests.support.synthetic import bzimage

    # A non-relocatable kernel runs at its pref_address: 16 MiB here, 32 MiB long.
    sysroot = sysroot_with_kernels(
        tmp_path,
        **{
            "vmlinuz-6.9.0-main": bzimage(version=b"6.9.0-main (b@e) #1"),
            "vmlinuz-6.9.0-capture": bzimage(relocatable=False, version=b"6.9.0-capture (b@e) #1"),
        },
    )
    recipe = write_recipe(
        tmp_path,
        MINIMAL_DUMP
        + f'[source]\nroot = "{sysroot}"\n'
        + '[kernel]\nmode = "dedicated"\nimage = "/boot/vmlinuz-6.9.0-main"\n'
        + 'dedicated_image = "/boot/vmlinuz-6.9.0-capture"\n'
        + '[crashkernel]\nreserve = "256M@512M"\n',
    )
    result = run_cli(str(recipe), "-o", str(previous_output))
    message = assert_user_error(result, f"{recipe}: kernel.dedicated_image:", "crashkernel.reserve")
    assert "0x1000000" in message and "0x20000000" in message, message
    assert_untouched(previous_output)


def test_package_that_does_not_exist(tmp_path: Path, previous_output: Path) -> None:
    recipe = write_recipe(
        tmp_path, MINIMAL_DUMP + '[source]\npackages = ["busybox-static", "no-such-package-kdb"]\n'
    )
    result = run_cli(str(recipe), "-o", str(previous_output))
    assert_user_error(
        result, f"{recipe}: source.packages: 'no-such-package-kdb': no such package for amd64"
    )
    assert_untouched(previous_output)
    assert_user_error(run_cli("fetch", str(recipe)), "no-such-package-kdb")


# ---------------------------------------------------------------------------
# Where a build writes: whole directories of ours, never over anything else


def test_output_onto_a_directory_of_user_files_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(mine), "-q")
    assert_user_error(result, f"{mine}: holds files kdump-build did not write; refusing")
    assert [path.name for path in mine.iterdir()] == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine"]


def test_output_onto_a_regular_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("not a directory")
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(target), "-q")
    assert_user_error(result, f"{target}: exists and is not a directory; refusing")
    assert target.read_text() == "not a directory"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_second_build_replaces_the_first_and_cleans_leftovers(tmp_path: Path) -> None:
    from builder.atomic import MARKER, MARKER_TEXT, STAGING_INFIX

    outdir = tmp_path / "out"
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(outdir), "-q")
    assert result.returncode == 0, result.stderr
    first = {path.name: path.read_bytes() for path in outdir.iterdir()}
    assert (outdir / MARKER).read_bytes().startswith(MARKER_TEXT)
    (outdir / "initrd.img").write_bytes(b"stale")  # replaced, not patched
    # What a build killed during its write leaves beside the output.
    leftover = tmp_path / f".out{STAGING_INFIX}killed"
    leftover.mkdir()
    (leftover / MARKER).write_bytes(MARKER_TEXT)
    (leftover / "initrd.img").write_bytes(b"half")
    result = run_cli(str(DEFAULT_RECIPE), "-o", str(outdir), "-q")
    assert result.returncode == 0, result.stderr
    assert {path.name: path.read_bytes() for path in outdir.iterdir()} == first
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_usage_error_is_one_line_with_a_hint() -> None:
    message = assert_user_error(run_cli("layout", "--no-such-option", "x"))
    assert message.startswith("kdump-build: error: No such option: --no-such-option")
    assert message.endswith("(try 'kdump-build layout --help')")
    assert_user_error(run_cli("inspect"), "Missing argument", "(try 'kdump-build inspect --help')")


def test_no_arguments_prints_help() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "Usage: kdump-build" in result.stdout and "Traceback" not in result.stderr


def test_inspect_empty_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "initrd.img"
    empty.write_bytes(b"")
    assert_user_error(run_cli("inspect", str(empty)), f"{empty}: empty file")
    assert_user_error(run_cli("diff", str(empty), str(empty)), f"{empty}: empty file")


def test_os_error_is_one_line_naming_the_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builder.cli

    def broken() -> None:
        raise PermissionError(13, "Permission denied", "/some/where")

    monkeypatch.setattr(builder.cli.app, "registered_commands",
                        list(builder.cli.app.registered_commands))  # fmt: skip
    builder.cli.app.command("broken-for-test")(broken)
    assert builder.cli.main(["broken-for-test"]) == 2
    assert capsys.readouterr().err == "kdump-build: error: /some/where: Permission denied\n"


# ------------------------------------------------------------------ inspect FILE.dtb

ARM64_DTB = REPO / "tests/data/arm64-oracle/qemu-arm64-4g-4cpu-256m-high-64m-low/capture-fdt.dtb"


def test_inspect_device_tree_shows_chosen_and_memory() -> None:
    result = run_cli("inspect", str(ARM64_DTB))  # the capture DTB kexec-tools built
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("(#address-cells 2, #size-cells 2)")
    assert (
        "  linux,usable-memory-range  0x12b600000-0x13b5fffff (256M), "
        "0xf8000000-0xfbffffff (64M)" in lines
    )
    assert "  linux,elfcorehdr           0x13b5ff000-0x13b5ff3ff (1024 bytes)" in lines
    assert "  /memory@40000000           0x40000000-0x13fffffff (4G)" in lines
    assert lines[-1] == "reserved"  # none here: kexec-tools adds no /memreserve/
    document = json.loads(run_cli("inspect", str(ARM64_DTB), "--json").stdout)
    usable = document["chosen"]["linux,usable-memory-range"]
    assert [(piece["start"], piece["end"]) for piece in usable] == [
        (0x12B600000, 0x13B600000),
        (0xF8000000, 0xFC000000),
    ]
    (memory,) = document["memory"]
    assert memory["node"] == "/memory@40000000"
    assert [(piece["start"], piece["size"]) for piece in memory["ranges"]] == [(1 << 30, 4 << 30)]


def test_inspect_device_tree_shows_reserved_ranges(tmp_path: Path) -> None:
    from builder.binfmt.fdt import DeviceTree, MemoryReservation, Node, cells

    two = (("#address-cells", cells(2, 1)), ("#size-cells", cells(2, 1)))
    secure = Node("secmon@5e000000", (("reg", cells(0x5E000000, 2) + cells(0x200000, 2)),))
    root = Node("", two, (Node("reserved-memory", two, (secure,)),))
    dtb = tmp_path / "reserved.dtb"
    dtb.write_bytes(DeviceTree(root, (MemoryReservation(0x48000000, 0x1000),)).to_bytes())
    lines = run_cli("inspect", str(dtb)).stdout.splitlines()
    assert lines[lines.index("reserved") + 1 :] == [
        "  /memreserve/               0x48000000-0x48000fff (4096 bytes)",
        "  /reserved-memory/secmon@5e000000 0x5e000000-0x5e1fffff (2M)",
    ]


def test_inspect_corrupt_device_tree_is_one_line(tmp_path: Path) -> None:
    cut = tmp_path / "cut.dtb"
    cut.write_bytes(ARM64_DTB.read_bytes()[:200])
    result = run_cli("inspect", str(cut))
    assert result.returncode == 2
    assert (
        result.stderr == f"kdump-build: error: {cut}: byte 0x4: totalsize 0x2015 outside "
        "the file of 0xc8 bytes\n"
    )


def test_version_is_the_one_pyproject_declares() -> None:
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = run_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"kdump-build {declared}\n", "")


def test_status_is_not_ready_without_a_loaded_crash_kernel() -> None:
    """Issue 25: status exited 0 on a machine that could not dump, and its JSON
    reservation repeated the text line's `reservation: ` prefix."""
    loaded = KexecFile.CRASH_LOADED.read()  # the 6.19 file, else the flat one
    if loaded is not None:
        assert loaded.strip() == "0", "the test machine has a crash kernel loaded"
    result = run_cli("status", "--json")
    assert result.returncode == 4, result.stderr
    summary = json.loads(result.stdout)
    assert summary["loaded"] is not True
    assert not summary["reservation"].startswith("reservation")
    text = run_cli("status")
    assert text.returncode == 4
    assert f"reservation: {summary['reservation']}\n" in text.stdout


def test_auto_says_nothing_on_a_kernel_without_kexec() -> None:
    from builder.cli.kexec import _auto_choice
    from builder.kexec.method import FileLoad, FileLoadProbe
    from builder.kexec.syscalls import KexecStatus

    absent = FileLoadProbe(FileLoad.ABSENT, "ENOSYS")
    assert _auto_choice(KexecStatus(None, None, None), absent) == (
        None,
        "this kernel has no kexec support for crash dumps",
    )
    method, _ = _auto_choice(KexecStatus(False, 0, None), absent)
    assert method is not None and method.value == "segments"


def test_fit_names_the_kernel_whose_rules_it_applies() -> None:
    """Issue 25: without a recipe, arm64's 6.2+ low range was applied with no note, and no
    option named the kernel. Debian 12's 6.1 adds no default low range to `,high`."""
    args = ("fit", "--arch", "aarch64", "--crashkernel", "256M,high", "--ram", "4G")
    newest = run_cli(*args)
    assert "+ low 128.0 MiB" in newest.stdout
    assert newest.stdout.endswith(
        "note: no --kernel: the rules of kernels 6.2 and later applied (--kernel VERSION)\n"
    )
    old = run_cli(*args, "--kernel", "6.1.0-57-arm64")
    assert old.returncode == 0 and "+ low" not in old.stdout and "note:" not in old.stdout
    bad = run_cli(*args, "--kernel", "foo")
    assert bad.stderr == (
        "kdump-build: error: fit: --kernel: 'foo' is not a kernel release (such as 6.1.0-57)\n"
    )
