"""enable and disable on a machine root made of real Debian packages (a temporary root:
no systemctl, no update-grub), and the boot-time rebuild when an input changes."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import HostError, OutputError, ReachError
from builder.host import boot, captures
from builder.host.enable import Effects, disable, enable
from builder.host.managed import MARKER
from builder.host.paths import HostPaths
from builder.host.probe import DumpFilesystem, HostFacts, installed_kernels
from builder.host.recipe import host_recipe_text
from builder.host.reserve import machine_need
from builder.host.state import record_enabled
from builder.image.fetch import FetchedPackage
from builder.kexec.crashinfo import CRASH_HOTPLUG_FILES
from builder.recipe.parse import parse_recipe
from builder.units import GiB

OFF = Effects(systemctl=False, update_grub=False, require_root=False)


@pytest.fixture(scope="module")
def sysroot(
    tmp_path_factory: pytest.TempPathFactory, default_packages: list[FetchedPackage]
) -> Path:
    root = tmp_path_factory.mktemp("machine")
    for package in default_packages:
        subprocess.run(["dpkg-deb", "-x", str(package.path), str(root)], check=True)
    (root / "etc/default").mkdir(parents=True, exist_ok=True)
    (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX="console=ttyS0"\n')
    return root


def facts_for(root: Path) -> HostFacts:
    filesystem = DumpFilesystem("LABEL=kdump", "ext4", root, "/var/crash")
    kernels = installed_kernels(HostPaths(root))
    return HostFacts(kernels, 2 * GiB, 2, "/usr/bin/makedumpfile", "/bin/busybox", filesystem,
                     ("console=ttyS0",))  # fmt: skip


DISK_MODULES = '["ext4", "virtio_blk", "virtio_pci"]'


def write_given_recipe(root: Path, modules: str = DISK_MODULES) -> Path:
    """The host recipe with fixed modules (a virtio disk's): a build machine's /sys has no
    dump disk."""
    text = host_recipe_text(facts_for(root), str(root))
    text = text.replace('modules = "auto"', f"modules = {modules}")
    path = root / "given.toml"
    path.write_text(text)
    return path


def test_enable_then_disable(sysroot: Path) -> None:
    paths = HostPaths(sysroot)
    (sysroot / "var/crash/2026-12-01-000000").mkdir(parents=True)
    (sysroot / "var/crash/2026-12-01-000000/vmcore").write_bytes(b"dump")
    lines: list[str] = []
    enable(write_given_recipe(sysroot), lines.append, paths, OFF, facts_for(sysroot))
    (version,) = installed_kernels(paths)
    record = json.loads((paths.capture(version) / "host.json").read_text())
    assert record["kernel_version"] == version and record["ram"] == 2 * GiB
    assert record["needed"] > 64 << 20 and record["recommended"].endswith("M")
    for path in (paths.unit, paths.postinst_hook, paths.postrm_hook, paths.install_plugin,
                 paths.udev_rule):  # fmt: skip
        assert MARKER in path.read_text(), path
    assert os.access(paths.postinst_hook, os.X_OK)
    assert paths.udev_rule == sysroot / "etc/udev/rules.d/98-kdump-build.rules"
    assert "try-reload-or-restart kdump-build.service" in paths.udev_rule.read_text()
    need = machine_need(paths)
    assert f"crashkernel={need.value}" in paths.grub_dropin.read_text()
    assert lines[-1] == f"reboot needed: crashkernel={need.value} takes effect at the next boot"
    assert any(line.startswith(f"reservation: crashkernel={need.value} for this machine")
               and "margin" in line for line in lines)  # fmt: skip

    lines.clear()
    disable(lines.append, paths, OFF)
    for path in (paths.unit, paths.postinst_hook, paths.grub_dropin, paths.captures,
                 paths.udev_rule):  # fmt: skip
        assert not path.exists(), path
    assert (sysroot / "var/crash/2026-12-01-000000/vmcore").read_bytes() == b"dump"
    assert lines[-1].startswith("disabled: the dumps in ")


def test_enable_refuses_a_capture_that_could_not_dump(sysroot: Path) -> None:
    # The host recipe without the module of the dump filesystem (ext4 is a module in
    # Debian's kernel): the capture could never mount dump.device.
    paths = HostPaths(sysroot)
    recipe = write_given_recipe(sysroot, modules='["virtio_blk", "virtio_pci"]')
    (version,) = installed_kernels(paths)
    lines: list[str] = []
    with pytest.raises(ReachError) as refused:
        enable(recipe, lines.append, paths, OFF, facts_for(sysroot))
    assert refused.value.lines == [
        f"{recipe}: initrd.modules: ext4 is not in the initrd or built into {version}: "
        "the capture cannot mount dump.device (add it)"
    ]
    for path in (paths.captures, paths.unit, paths.postinst_hook, paths.grub_dropin):
        assert not path.exists(), path
    assert not any(line.startswith("capture:") for line in lines)


def test_a_host_recipe_without_console_logs_to_the_first_terminal(sysroot: Path) -> None:
    # A machine booted without console= would otherwise get a capture refused for it.
    facts = replace(facts_for(sysroot), consoles=())
    text = host_recipe_text(facts, str(sysroot))
    assert 'cmdline_append = ["console=tty0"]' in text.splitlines()


def test_enable_leaves_someone_elses_files_alone(sysroot: Path, tmp_path: Path) -> None:
    paths = HostPaths(sysroot)
    paths.unit.parent.mkdir(parents=True, exist_ok=True)
    paths.unit.write_text("[Unit]\nDescription=mine\n")
    try:
        with pytest.raises(OutputError, match="not written by kdump-build"):
            enable(write_given_recipe(sysroot), print, paths, OFF, facts_for(sysroot))
        assert paths.unit.read_text() == "[Unit]\nDescription=mine\n"
    finally:
        paths.unit.unlink()
        disable(print, paths, OFF)


def test_a_recipe_that_is_not_for_this_machine_is_refused(sysroot: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "other.toml"
    recipe.write_text('[source]\nroot = "/elsewhere"\n[dump]\ndevice = "LABEL=x"\n')
    with pytest.raises(HostError, match=r"source\.root: enable builds from this machine"):
        enable(recipe, print, HostPaths(sysroot), OFF, facts_for(sysroot))


def test_boot_rebuilds_only_when_an_input_changed(sysroot: Path) -> None:
    paths = HostPaths(sysroot)
    recipe_path = write_given_recipe(sysroot)
    (version,) = installed_kernels(paths)
    recipe = parse_recipe(recipe_path.read_text(), recipe_path)
    record_enabled(paths, recipe_path)
    said: list[str] = []
    try:
        boot.ensure_capture(recipe, version, paths, said.append)
        assert said == [
            f"rebuilding the capture for {version}: no capture was built for this kernel"
        ]
        said.clear()
        boot.ensure_capture(recipe, version, paths, said.append)
        assert said == []
        capture, image = paths.capture(version), paths.kernel_image(version)
        original = recipe_path.read_text()
        recipe_path.write_text(original + "\n# edited\n")
        reason = captures.staleness(capture, captures.current_inputs(recipe_path, image))
        assert reason == f"the recipe {recipe_path} changed"
        recipe_path.write_text(original)
        os.utime(image, ns=(0, image.stat().st_mtime_ns + 1))
        reason = captures.staleness(capture, captures.current_inputs(recipe_path, image))
        assert reason == f"the kernel {image} changed"
    finally:
        disable(print, paths, OFF)


def test_disable_on_a_machine_never_enabled_says_so(tmp_path: Path) -> None:
    (tmp_path / "var/crash").mkdir(parents=True)
    lines: list[str] = []
    disable(lines.append, HostPaths(tmp_path), OFF)
    assert lines == ["kdump-build was not enabled on this machine: nothing to remove"]
    # Only the machine's lock, in /run (a tmpfs: gone at the next boot).
    names = sorted(path.name for path in tmp_path.rglob("*"))
    assert names == ["crash", "kdump-build.lock", "run", "var"]


def test_with_the_package_enable_and_disable_only_switch(sysroot: Path) -> None:
    """The Debian package owns the unit and the hooks: enable writes none of them, disable
    removes none of them; only this machine's state comes and goes."""
    from builder.host import service

    paths = HostPaths(sysroot)
    installed = {sysroot / relative: text for relative, (text, _) in
                 service.packaged_files().items()}  # fmt: skip
    for path, text in installed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    try:
        lines: list[str] = []
        enable(write_given_recipe(sysroot), lines.append, paths, OFF, facts_for(sysroot))
        assert "service: kdump-build.service and the kernel hooks of the kdump-build package, " \
            "switched on" in lines  # fmt: skip
        assert not paths.unit.exists() and not paths.install_plugin.exists()
        assert not paths.udev_rule.exists()
        assert {path: path.read_text() for path in installed} == installed
        assert (paths.config_dir / "enabled").exists() and paths.grub_dropin.exists()
        disable(lines.append, paths, OFF)
        assert {path: path.read_text() for path in installed} == installed
        assert not (paths.config_dir / "enabled").exists() and not paths.captures.exists()
    finally:
        for path in installed:
            path.unlink()


def test_the_kernel_hook_rebuilds_only_a_stale_capture(
    sysroot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the package's postinst runs per capture on an upgrade: a new kdump-build /init
    rebuilds, the same one leaves the capture as it is."""
    paths = HostPaths(sysroot)
    recipe_path = write_given_recipe(sysroot)
    (version,) = installed_kernels(paths)
    record_enabled(paths, recipe_path)
    said: list[str] = []
    try:
        boot.kernel_installed(version, None, said.append, paths)
        assert said == [f"kdump-build: built {paths.capture(version)} for kernel {version} "
                        "(no capture was built for this kernel)"]  # fmt: skip
        built = (paths.capture(version) / "initrd.img").stat().st_mtime_ns
        said.clear()
        boot.kernel_installed(version, None, said.append, paths)
        assert said == [f"kdump-build: {paths.capture(version)} is up to date"]
        assert (paths.capture(version) / "initrd.img").stat().st_mtime_ns == built
        old = captures.builder_version()
        monkeypatch.setattr(captures, "builder_version", lambda: "0.2.0+init.0123456789ab")
        said.clear()
        boot.kernel_installed(version, None, said.append, paths)
        assert said == [f"kdump-build: built {paths.capture(version)} for kernel {version} "
                        f"(kdump-build changed ({old} -> 0.2.0+init.0123456789ab))"]  # fmt: skip
    finally:
        disable(print, paths, OFF)


def test_reload_loads_again_unless_the_kernel_rewrites_the_header(sysroot: Path) -> None:
    """The service's reload, which the udev rule asks for after CPU or memory hotplug."""
    paths = HostPaths(sysroot)
    (version,) = installed_kernels(paths)
    record_enabled(paths, write_given_recipe(sysroot))
    cpu_file, memory_file = (sysroot / name for name in CRASH_HOTPLUG_FILES)
    cpu_file.parent.mkdir(parents=True, exist_ok=True)
    memory_file.parent.mkdir(parents=True, exist_ok=True)
    said: list[str] = []
    loaded: list[Path] = []
    try:
        boot.kernel_installed(version, None, print, paths)
        # Debian 12's 6.1: no crash_hotplug file. Then 6.6+ with a load without the flag.
        for value in (None, "0\n"):
            if value is not None:
                cpu_file.write_text(value)
                memory_file.write_text(value)
            said.clear()
            boot.reload(said.append, loaded.append, paths, version)
            assert loaded.pop() == paths.capture(version) and not loaded
            assert said == [f"kdump-build: reloading {paths.capture(version)}: a new ELF core "
                            "header for the CPUs and memory online now (this kernel does not "
                            "rewrite it)"]  # fmt: skip
        memory_file.write_text("1\n")  # a kernel without CONFIG_HOTPLUG_CPU has only this one
        said.clear()
        boot.reload(said.append, loaded.append, paths, version)
        assert loaded == [] and said[0].endswith("(crash_hotplug reads 1): nothing to reload")
    finally:
        disable(print, paths, OFF)
        cpu_file.unlink(missing_ok=True)
        memory_file.unlink(missing_ok=True)
