"""Module resolution on the real Debian kernel package."""

from __future__ import annotations

import pytest

from builder.errors import ModuleError
from builder.modules import ModuleIndex, canonical_name, parse_modinfo
from builder.sources import PackageRoot


@pytest.fixture(scope="module")
def index(default_root: PackageRoot) -> ModuleIndex:
    (kernel,) = default_root.glob("/boot/vmlinuz-*")
    return ModuleIndex(default_root, kernel.removeprefix("/boot/vmlinuz-"))


def test_dependencies_load_first(index: ModuleIndex) -> None:
    order = [module.name for module in index.load_order(["virtio_blk", "ext4"], "initrd.modules")]
    # Each module's depends= (read independently here) precedes it.
    for position, name in enumerate(order):
        info = parse_modinfo(index.module(name, "t").elf, name)
        for dependency in ",".join(info.get("depends", ())).split(","):
            if dependency:
                assert canonical_name(dependency) in order[:position], (name, dependency)
    assert order.index("virtio_ring") < order.index("virtio_blk")
    assert {"jbd2", "mbcache", "crc16"} <= set(order)
    assert order[-1] == "ext4"


def test_dash_and_underscore_are_one_name(index: ModuleIndex) -> None:
    assert index.module("crc32c-generic", "t").name == "crc32c_generic"


def test_unknown_module(index: ModuleIndex) -> None:
    with pytest.raises(ModuleError) as caught:
        index.load_order(["no_such_module"], "initrd.modules")
    assert str(caught.value).startswith("initrd.modules: module 'no_such_module' not found")


def test_builtin_module_is_skipped(index: ModuleIndex) -> None:
    builtin = sorted(index.builtin - set(index.paths))
    assert builtin, "the Debian kernel has built-in modules"
    assert index.load_order([builtin[0]], "initrd.modules") == []


def test_vermagic_mismatch(default_root: PackageRoot) -> None:
    (kernel,) = default_root.glob("/boot/vmlinuz-*")
    version = kernel.removeprefix("/boot/vmlinuz-")
    index = ModuleIndex(default_root, version)
    index.kernel_version = "6.1.0-0-other"  # as if the capture kernel were another build
    with pytest.raises(
        ModuleError, match=rf"built for {version}, not the capture kernel 6.1.0-0-other"
    ):
        index.module("virtio_blk", "initrd.modules")


def test_missing_modules_directory(default_root: PackageRoot) -> None:
    with pytest.raises(ModuleError, match=r"no modules for kernel 9\.9\.9"):
        ModuleIndex(default_root, "9.9.9")
