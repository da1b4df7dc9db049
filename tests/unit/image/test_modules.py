"""Module resolution on the real Debian kernel package."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from builder.errors import ModuleError
from builder.image.modules import ModuleIndex, canonical_name
from builder.image.packages import PackageRoot
from builder.image.sources import DirectoryRoot


@pytest.fixture(scope="module")
def index(default_root: PackageRoot) -> ModuleIndex:
    (kernel,) = default_root.glob("/boot/vmlinuz-*")
    return ModuleIndex(default_root, kernel.removeprefix("/boot/vmlinuz-"))


def test_dependencies_load_first(index: ModuleIndex) -> None:
    order = [module.name for module in index.load_order(["virtio_blk", "ext4"], "initrd.modules")]
    # Each module's depends=, read by kmod's modinfo (not our .modinfo parser), precedes it.
    for position, name in enumerate(order):
        for dependency in _kmod_field(index, name, "depends").split(","):
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


# --- aliases, soft dependencies and built-ins on the real Debian kernel ---


def test_alias_names_resolve(index: ModuleIndex) -> None:
    assert index.resolve("fs-ext4", "t") == ["ext4"]
    assert "crc32c_generic" in index.resolve("crypto-crc32c", "t")
    # Aliases are shell patterns: a virtio-blk PCI device and its virtio device.
    assert index.resolve("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "t") == [
        "virtio_pci"
    ]
    assert index.resolve("virtio:d00000002v00001AF4", "t") == ["virtio_blk"]


def _kmod_field(index: ModuleIndex, name: str, field: str) -> str:
    """A .modinfo field of a module as kmod's modinfo reads it from the package's file."""
    with tempfile.NamedTemporaryFile(suffix=".ko") as copy:
        copy.write(index.root.read_bytes(index.paths[name]))
        copy.flush()
        command = ["modinfo", "-F", field, copy.name]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_ext4_brings_its_softdep_first(index: ModuleIndex) -> None:
    ext4 = index.module("ext4", "t")
    # Read independently with kmod's modinfo.
    softdep = _kmod_field(index, "ext4", "softdep").split()
    assert softdep[0] == "pre:"
    assert ext4.softdep_pre == tuple(canonical_name(name) for name in softdep[1:])
    assert index.resolve(softdep[1], "t")  # an alias (crypto-crc32c), not a file name
    order = [module.name for module in index.load_order(["ext4"], "t")]
    assert order.index("crc32c_generic") < order.index("ext4")


def test_builtin_alias_is_present(index: ModuleIndex) -> None:
    name, aliases = next(
        (name, aliases)
        for name, aliases in sorted(index.builtin_aliases.items())
        if name not in index.paths and any("*" not in alias for alias in aliases)
    )
    alias = next(alias for alias in aliases if "*" not in alias)
    assert index.resolve(alias, "t") == [], (name, alias)
    assert index.load_order([alias], "t") == []


def test_index_is_cached_and_equal(default_root: PackageRoot, tmp_path: Path) -> None:
    (kernel,) = default_root.glob("/boot/vmlinuz-*")
    version = kernel.removeprefix("/boot/vmlinuz-")
    first = ModuleIndex(default_root, version, tmp_path)
    # The infos, and the alias tables derived from them.
    assert len(list(tmp_path.glob("*.aliases.json.e1"))) == 1
    assert len(list(tmp_path.glob("*.json.e1"))) == 2
    second = ModuleIndex(default_root, version, tmp_path)
    assert second._exact_aliases == first._exact_aliases
    assert [tuple(row) for row in second._pattern_aliases] == first._pattern_aliases
    assert second.resolve("crypto-crc32c", "t") == first.resolve("crypto-crc32c", "t")
    assert first.infos == second.infos
    assert len(first.infos) > 3000


# --- synthetic modules built with gcc: cycles, compression, firmware ---


def make_module(base: Path, name: str, *entries: str, version: str = "9.9.9") -> bytes:
    """A relocatable ELF object whose .modinfo holds `entries`, like a .ko."""
    info = "".join(f"{entry}\\0" for entry in (*entries, f"vermagic={version} SMP mod_unload "))
    source = base / f"{name}.c"
    source.write_text(
        '__attribute__((section(".modinfo"), used, aligned(1)))\n'
        f'static const char modinfo[] = "{info}";\n'
    )
    target = base / f"{name}.ko"
    subprocess.run(["gcc", "-c", "-o", str(target), str(source)], check=True)
    source.unlink()
    return target.read_bytes()


def synthetic_root(tmp_path: Path, config: str = "", **modules: tuple[str, ...]) -> Path:
    root = tmp_path / "root"
    kernel = root / "lib/modules/9.9.9/kernel"
    kernel.mkdir(parents=True)
    for name, entries in modules.items():
        make_module(kernel, name, *entries)
    (root / "boot").mkdir()
    (root / "boot/config-9.9.9").write_text(config)
    return root


def test_softdep_cycle_is_dropped_hard_cycle_is_an_error(tmp_path: Path) -> None:
    root = synthetic_root(
        tmp_path,
        a=("depends=b", "softdep=pre: c post: d"),
        b=(),
        c=("softdep=pre: a",),
        d=("depends=a",),
        x=("depends=y",),
        y=("depends=x",),
    )
    index = ModuleIndex(DirectoryRoot(root), "9.9.9")
    order = [module.name for module in index.load_order(["a"], "initrd.modules")]
    assert order == ["c", "b", "a", "d"]
    with pytest.raises(ModuleError, match=r"initrd.modules: module dependency cycle: x -> y -> x"):
        index.load_order(["x"], "initrd.modules")


def test_missing_softdep_is_fine_missing_depend_is_not(tmp_path: Path) -> None:
    root = synthetic_root(tmp_path, a=("softdep=pre: nothere",), b=("depends=nothere",))
    index = ModuleIndex(DirectoryRoot(root), "9.9.9")
    assert [module.name for module in index.load_order(["a"], "k")] == ["a"]
    with pytest.raises(ModuleError, match="k: module 'nothere' not found"):
        index.load_order(["b"], "k")


@pytest.mark.parametrize(
    ("suffix", "compressor", "option"),
    [
        (".xz", ["xz", "-C", "crc32"], "CONFIG_MODULE_COMPRESS_XZ"),
        (".zst", ["zstd", "-q", "--rm"], "CONFIG_MODULE_COMPRESS_ZSTD"),
        (".gz", ["gzip", "-n"], "CONFIG_MODULE_COMPRESS_GZIP"),
    ],
)
def test_compressed_modules(
    tmp_path: Path, suffix: str, compressor: list[str], option: str
) -> None:
    for config, keep in (("", False), (f"CONFIG_MODULE_DECOMPRESS=y\n{option}=y\n", True)):
        base = tmp_path / f"keep{keep}"
        base.mkdir()
        root = synthetic_root(base, config, a=("alias=fs-afs",))
        plain = root / "lib/modules/9.9.9/kernel/a.ko"
        elf = plain.read_bytes()
        subprocess.run([*compressor, str(plain)], check=True)
        assert not plain.exists()
        index = ModuleIndex(DirectoryRoot(root), "9.9.9")
        (module,) = index.load_order(["fs-afs"], "k")
        assert module.path.endswith(f"a.ko{suffix}") and module.elf == elf
        path, data = index.stored_form(module)
        # busybox insmod unpacks xz and gzip itself; zstd needs the kernel's
        # MODULE_INIT_COMPRESSED_FILE, which busybox does not pass.
        if keep and suffix != ".zst":
            assert path.endswith(suffix) and data == (root / module.path.lstrip("/")).read_bytes()
        else:
            assert path.endswith("/a.ko") and data == elf


def test_firmware_found_compressed_or_missing(tmp_path: Path) -> None:
    for config, keep in (("", False), ("CONFIG_FW_LOADER_COMPRESS_XZ=y\n", True)):
        base = tmp_path / f"keep{keep}"
        base.mkdir()
        root = synthetic_root(base, config, a=("firmware=vendor/fw.bin", "firmware=gone.bin"))
        firmware = root / "lib/firmware/vendor"
        firmware.mkdir(parents=True)
        (firmware / "fw.bin").write_bytes(b"firmware blob" * 10)
        subprocess.run(["xz", "-C", "crc32", str(firmware / "fw.bin")], check=True)
        index = ModuleIndex(DirectoryRoot(root), "9.9.9")
        found, missing = index.firmware(index.load_order(["a"], "k"))
        assert missing == ["gone.bin"]
        (item,) = found
        if keep:
            assert item.path == "/lib/firmware/vendor/fw.bin.xz"
            assert item.data == (firmware / "fw.bin.xz").read_bytes()
        else:
            assert item.path == "/lib/firmware/vendor/fw.bin"
            assert item.data == b"firmware blob" * 10


def test_not_a_module(tmp_path: Path) -> None:
    root = synthetic_root(tmp_path)
    (root / "lib/modules/9.9.9/kernel/bad.ko").write_bytes(b"\x7fELF" + b"\x02\x01" + b"\0" * 70)
    with pytest.raises(ModuleError, match=r"bad\.ko: not a kernel module"):
        ModuleIndex(DirectoryRoot(root), "9.9.9")
