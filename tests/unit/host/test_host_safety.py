"""enable, disable, boot and the hooks on a shared machine (issue 24, items 4, 7, 8).

On the code before: enable removed a capture a kernel hook had built meanwhile;
a hook did not wait for a run in progress; a recipe in a directory nobody
owns, or one anyone may write, was rebuilt from at boot; disable deleted a
host recipe the admin had edited.
"""

from __future__ import annotations

import dataclasses
import fcntl
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from builder.atomic import replace_directory
from builder.errors import HostError
from builder.host import boot
from builder.host.enable import disable, enable, install_files, write_host_recipe
from builder.host.paths import HostPaths
from builder.host.probe import installed_kernels
from builder.host.state import enabled_recipe, record_enabled
from tests.support.unprivileged import as_nobody, shared
from tests.unit.host.test_enable import OFF, facts_for, sysroot, write_given_recipe

__all__ = ["shared", "sysroot"]  # the fixtures


def test_enable_keeps_the_capture_a_kernel_hook_built_meanwhile(sysroot: Path) -> None:
    paths = HostPaths(sysroot)
    (version,) = installed_kernels(paths)
    facts = facts_for(sysroot)  # probed before the new kernel arrived
    new = "6.1.0-99-amd64"
    shutil.copy(paths.kernel_image(version), paths.kernel_image(new))
    (paths.modules / new).mkdir()

    def hooks_build(staging: Path) -> None:  # what kernel-installed left behind
        (staging / "vmlinuz").write_bytes(b"k")

    replace_directory(paths.capture(new), hooks_build)
    lines: list[str] = []
    try:
        enable(write_given_recipe(sysroot), lines.append, paths, OFF, facts)
        assert (paths.capture(new) / "vmlinuz").read_bytes() == b"k"
        assert not any("no longer installed" in line for line in lines)
    finally:
        disable(print, paths, OFF)
        paths.kernel_image(new).unlink()
        (paths.modules / new).rmdir()


def _hold_the_lock(lock: str, held: str) -> None:
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    Path(held).touch()
    time.sleep(1.5)


def test_a_kernel_hook_waits_for_the_run_in_progress(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    paths.lock.parent.mkdir(parents=True)
    # The kernel's modules are still there (as in its postrm before purge): a real name.
    (paths.modules / "6.1.0-9-amd64").mkdir(parents=True)
    held = tmp_path / "held"
    holder = multiprocessing.get_context("fork").Process(
        target=_hold_the_lock, args=(str(paths.lock), str(held))
    )
    holder.start()
    while not held.exists():
        time.sleep(0.02)
    started = time.monotonic()
    boot.kernel_removed("6.1.0-9-amd64", print, paths)
    waited = time.monotonic() - started
    holder.join(30)
    assert waited > 0.5


def _enabled_with(paths: HostPaths, recipe: Path) -> None:
    recipe.write_text('[source]\nroot = "/"\n[dump]\ndevice = "LABEL=kdump"\n')
    record_enabled(paths, recipe)


def test_a_recipe_in_a_directory_another_user_owns_is_refused_at_boot(
    tmp_path: Path, shared: Path
) -> None:
    as_nobody("import os, sys; os.mkdir(sys.argv[1])", str(shared / "recipes"))
    recipe = shared / "recipes" / "recipe.toml"
    paths = HostPaths(tmp_path)
    _enabled_with(paths, recipe)
    # nobody can put their own recipe in its place: the directory is theirs.
    as_nobody("import os, sys; os.rename(sys.argv[1], sys.argv[1] + '.old')", str(recipe))
    os.rename(f"{recipe}.old", recipe)
    with pytest.raises(HostError) as raised:
        enabled_recipe(paths)
    assert str(raised.value) == (
        f"{recipe}: refusing a recipe that someone other than root can change "
        f"({shared / 'recipes'} is owned by uid 65534, not root)"
    )


def test_a_recipe_anyone_may_write_is_refused(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    recipe = tmp_path / "recipe.toml"
    _enabled_with(paths, recipe)
    os.chmod(recipe, 0o646)
    with pytest.raises(HostError, match=r"recipe\.toml: refusing a recipe .* \(it is writable "
                                        r"by everyone\)$"):  # fmt: skip
        enabled_recipe(paths)


def test_a_host_file_another_user_controls_is_refused_as_an_include(
    tmp_path: Path, shared: Path
) -> None:
    planted = shared / "planted.conf"
    as_nobody("open(__import__('sys').argv[1], 'w').write('x')", str(planted))
    paths = HostPaths(tmp_path)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'[source]\nroot = "/"\n[initrd]\nextra_files = ["/etc/x=host:{planted}"]\n'
                      '[dump]\ndevice = "LABEL=kdump"\n')  # fmt: skip
    record_enabled(paths, recipe)
    with pytest.raises(HostError, match=f"{planted}: refusing a file {recipe} includes"):
        enabled_recipe(paths)


def test_a_hook_anyone_may_write_is_refused(tmp_path: Path) -> None:
    """The capture runs dump.pre and dump.post as root."""
    paths = HostPaths(tmp_path)
    (tmp_path / "pre.sh").write_text("echo pre\n")
    os.chmod(tmp_path / "pre.sh", 0o646)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[source]\nroot = "/"\n[dump]\ndevice = "LABEL=kdump"\npre = ["pre.sh"]\n')
    record_enabled(paths, recipe)
    with pytest.raises(
        HostError, match=r"pre\.sh: refusing a hook .* \(it is writable by everyone\)$"
    ):
        enabled_recipe(paths)


def test_enable_refuses_to_install_an_executable_another_user_can_change(
    tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_nobody("import os, sys; os.mkdir(sys.argv[1])", str(shared / "venv"))
    python = shared / "venv" / "python3"
    shutil.copy(sys.executable, python)
    monkeypatch.setattr(sys, "executable", str(python))
    paths = HostPaths(tmp_path)
    with pytest.raises(HostError, match="refusing an executable that someone other than root"):
        install_files(paths, print)
    assert not paths.unit.exists()


def test_disable_keeps_a_host_recipe_the_admin_edited(sysroot: Path) -> None:
    paths = HostPaths(sysroot)
    written = write_host_recipe(facts_for(sysroot), paths)
    record_enabled(paths, written)
    written.write_text(written.read_text() + "# mine\n")
    lines: list[str] = []
    disable(lines.append, paths, OFF)
    assert written.read_text().endswith("# mine\n")
    assert f"kept {written}: edited since kdump-build wrote it (remove it by hand)" in lines
    written.unlink()
    # Unedited, it goes.
    record_enabled(paths, write_host_recipe(facts_for(sysroot), paths))
    disable(lines.append, paths, OFF)
    assert not written.exists()


def _take_the_lock(lock: str) -> None:
    descriptor = os.open(lock, os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # what the restarted service's boot does


def test_enable_restarts_the_service_after_releasing_the_lock(
    sysroot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`systemctl restart` waits for the service's `kdump-build boot`, which takes the lock:
    restarting while holding it would never return."""
    from builder.crashkernel.live import LiveReservation
    from builder.host import enable as arming

    paths = HostPaths(sysroot)
    took: list[int | None] = []

    def systemctl(*args: str) -> None:
        if args[0] == "restart":
            boot = multiprocessing.get_context("fork").Process(
                target=_take_the_lock, args=(str(paths.lock),)
            )
            boot.start()
            boot.join(10)
            took.append(boot.exitcode)
            boot.kill()

    monkeypatch.setattr(arming, "systemctl", systemctl)
    monkeypatch.setattr(arming, "read_live_reservation",
                        lambda: LiveReservation(None, None, 1 << 40))  # fmt: skip
    effects = dataclasses.replace(OFF, systemctl=True)
    try:
        enable(write_given_recipe(sysroot), print, paths, effects, facts_for(sysroot))
    finally:
        disable(print, paths, OFF)
    assert took == [0]  # the service got the lock at once
