"""Every parser of outside bytes as a fuzz target: real seeds, mutated; only typed errors out.

A `Target` names a parser, the seeds its mutations start from (real inputs
where there are any: captured iomem and sysfs files, Debian's kernel and
modules, the bundled recipes) and how one input is fed to it. `run_one`
feeds it and lets only a `KdumpBuildError` with a one-line message out:
anything else (an IndexError, a struct.error, a MemoryError, a hang caught by
the caller's deadline) is a bug the fuzzer reports.

tests/unit/test_fuzz.py runs each target through hypothesis in CI (`mutate`);
`python -m bench.fuzz_campaign` runs the long campaign.
"""

from __future__ import annotations

import functools
import io
import json
import random
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import KdumpBuildError
from tests.support.paths import DATA, REPO

Seed = tuple[str, bytes]  # (label, bytes): the label says what the bytes are to the parser
SYSFS = DATA / "sysfs" / "qemu-1g-crashkernel-192m"


@dataclass(frozen=True)
class Target:
    """One parser of outside bytes."""

    name: str
    seeds: Callable[[], list[Seed]]
    run: Callable[[str, bytes], object]


def run_one(target: Target, label: str, data: bytes) -> str:
    """Feed one input; returns "ok" or the typed error's class name, raises anything else."""
    try:
        target.run(label, data)
    except KdumpBuildError as error:
        message = str(error)
        if not message or "\n" in message:
            raise AssertionError(f"{target.name}: not a one-line message: {message!r}") from error
        return type(error).__name__
    return "ok"


def mutate(seed: Seed, rng: random.Random) -> Seed:
    """`seed` cut, bit-flipped (anywhere or in its first KiB), spliced, a chunk repeated,
    or random bytes instead, as `rng` decides.

    Hypothesis (tests/unit/test_fuzz.py) draws only the seed and the random
    seed: drawing every byte through it costs ten times as much per input.
    """
    label, original = seed
    data = bytearray(original)
    how = rng.choice(["truncate", "flip", "head", "splice", "repeat", "random"])
    if how == "random" or not data:
        return label, rng.randbytes(rng.randrange(513))
    if how == "truncate":
        return label, bytes(data[: rng.randrange(len(data) + 1)])
    if how == "splice":
        at = rng.randrange(len(data) + 1)
        return label, bytes(data[:at] + rng.randbytes(rng.randrange(1, 33)) + data[at:])
    if how == "repeat":
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.randrange(1, 65)]
        return label, bytes(data[:start] + chunk * rng.randrange(2, 9) + data[start:])
    limit = len(data) if how == "flip" else min(len(data), 1024)
    for _ in range(rng.randrange(1, 9)):
        bit = rng.randrange(limit * 8)
        data[bit // 8] ^= 1 << (bit % 8)
    return label, bytes(data)


# ---------------------------------------------------------------------------
# Seeds


@functools.cache
def _kernel_package_root() -> object:
    from builder.image.fetch import fetch_packages
    from builder.image.packages import PackageRoot
    from builder.image.pipeline import package_cache

    packages = fetch_packages(["linux-image-amd64"], "x86_64")
    return PackageRoot([package.path for package in packages], package_cache())


def _module_paths(name: str) -> list[str]:
    from builder.image.packages import PackageRoot

    root = _kernel_package_root()
    assert isinstance(root, PackageRoot)
    (base,) = root.glob("/lib/modules/*")
    return [path for path in root.walk_files(base) if path.endswith(f"/{name}.ko")]


def _small_module() -> bytes:
    from builder.image.packages import PackageRoot

    root = _kernel_package_root()
    assert isinstance(root, PackageRoot)
    (path,) = _module_paths("virtio_blk")
    return root.read_bytes(path)


def _iomem_seeds() -> list[Seed]:
    files = [*sorted((DATA / "iomem").glob("*.txt")), SYSFS / "proc" / "iomem"]
    return [("iomem", path.read_bytes()) for path in files]


SYSFS_FILES = (
    "sys/devices/system/cpu/possible",
    "sys/devices/system/cpu/cpu0/crash_notes",
    "sys/devices/system/cpu/cpu0/crash_notes_size",
    "sys/kernel/vmcoreinfo",
    "sys/kernel/boot_params/data",
    "proc/kcore",
)


def _sysfs_seeds() -> list[Seed]:
    return [(relative, (SYSFS / relative).read_bytes()) for relative in SYSFS_FILES]


def _initrd_seeds() -> list[Seed]:
    from builder.binfmt.cpio import write_cpio
    from builder.compression import Compression, compress
    from builder.image.initrd import InitrdPlan

    plan = InitrdPlan()
    plan.directory("/bin")
    plan.file("/init", b"#!/bin/sh\nexec /bin/sh\n", 0o755)
    plan.symlink("/bin/sh", "busybox")
    plan.chardev("/dev/console", 5, 1)
    plan.file("/lib/modules/x.ko", _small_module()[:3000])
    archive = write_cpio(plan.members())
    seeds = [("initrd", archive), ("initrd", write_cpio([]) + archive)]
    for method in (Compression.ZSTD, Compression.GZIP, Compression.XZ, Compression.LZ4):
        seeds.append(("initrd", compress(archive, method, 1)))
    seeds.append(("initrd", archive + compress(archive, Compression.ZSTD, 1)))
    return seeds


def _flat_seeds() -> list[Seed]:
    from builder.binfmt.flat import flat_block, flat_end, flat_header

    stream = flat_header() + flat_block(4096, b"page" * 1024) + flat_block(0, b"\x7fELF" * 16)
    return [("flat", stream + flat_end()), ("flat", flat_header() + flat_end())]


def _elf_seeds() -> list[Seed]:
    from builder.binfmt.elf import _tiny_elf
    from builder.kexec.purgatory.x86_64 import PURGATORY

    seeds = [("elf", _tiny_elf()), ("elf", PURGATORY.shipped_object()), ("elf", _small_module())]
    if Path("/usr/bin/true").exists():
        seeds.append(("elf", Path("/usr/bin/true").read_bytes()))
    return seeds


def _modinfo_seeds() -> list[Seed]:
    import lzma

    import zstandard

    module = _small_module()
    return [
        ("virtio_blk.ko", module),
        ("virtio_blk.ko.xz", lzma.compress(module, check=lzma.CHECK_CRC32)),
        ("virtio_blk.ko.zst", zstandard.ZstdCompressor().compress(module)),
    ]


CRASHKERNEL_SEEDS = (
    "192M", "256M@16M", "1G-4G:256M,4G-64G:512M,64G-:1G@16M", "512M,high", "128M,low",
    "2G-64G:256M,64G-:512M", "64M,cma", "0x10000000@0x1000000",
    "crashkernel=256M,high crashkernel=128M,low", "crashkernel=1G-:320M",
)  # fmt: skip


def _recipe_seeds() -> list[Seed]:
    recipes = sorted((REPO / "recipes").glob("*.toml"))
    seeds = [("recipe", path.read_bytes()) for path in recipes]
    nfs = (
        b'[source]\nroot = "/"\n[dump]\ntarget = "nfs"\nnfs = "10.0.2.2:/srv"\n'
        b'nfs_options = ["port=2049"]\nnetwork = "static"\nip = "10.0.2.15/24"\n'
    )
    ssh = b'[source]\nroot = "/"\n[dump]\ntarget = "ssh"\nssh = "root@10.0.2.2"\nssh_key = "k"\n'
    return [*seeds, ("recipe", nfs), ("recipe", ssh)]


def _kernel_seeds() -> list[Seed]:
    from tests.support import synthetic
    from tests.support.synthetic import arm64_image, bzimage, riscv_image, zboot

    return [
        ("kernel", bzimage()),
        ("kernel", bzimage(relocatable=False, protocol=0x020A, setup_sects=0)),
        ("kernel", arm64_image()),
        ("kernel", riscv_image()),
        ("kernel", synthetic.compress("gzip", arm64_image())),
        ("kernel", zboot(arm64_image(), "gzip")),
        ("kernel", synthetic.uki(bzimage())),
        ("kernel", synthetic.elf64(machine=62)),
    ]


def _package_seeds() -> list[Seed]:
    from tests.support.packages import Entry, Kind, write_deb, write_rpm, write_tar

    entries = [
        Entry("./usr/", kind=Kind.DIR, mode=0o755),
        Entry("./usr/bin/tool", b"#!/bin/sh\necho tool\n" * 20, mode=0o755),
        Entry("./usr/bin/link", kind=Kind.SYMLINK, target="tool"),
        Entry("./usr/bin/hard", kind=Kind.HARDLINK, target="./usr/bin/tool"),
    ]
    seeds = []
    with tempfile.TemporaryDirectory() as scratch:
        for suffix, writer in ((".tar.gz", write_tar), (".tar.xz", write_tar),
                               (".deb", write_deb), (".rpm", write_rpm)):  # fmt: skip
            path = writer(Path(scratch) / f"p{suffix}", [*entries])
            seeds.append((suffix, path.read_bytes()))
    return seeds


def _ssh_key_seeds() -> list[Seed]:
    with tempfile.TemporaryDirectory() as scratch:
        key = Path(scratch) / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fuzz", "-f",
                        str(key)], check=True)  # fmt: skip
        openssh = key.read_bytes()
    from builder.targets.ssh import dropbear_key

    return [("ssh key", openssh), ("ssh key", dropbear_key(openssh, "seed"))]


def _manifest_seeds() -> list[Seed]:
    import hashlib

    def record(data: bytes) -> dict[str, object]:
        return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    manifest = {
        "recipe": "fuzz", "arch": "x86_64", "cmdline": "console=ttyS0 rdinit=/init",
        "kernel": {"version": "6.1.0", **record(_BUILD["vmlinuz"])},
        "kexec": {"backup_region": False}, "initrd": record(_BUILD["initrd.img"]),
        "members": [],
    }  # fmt: skip
    return [("manifest.json", json.dumps(manifest, indent=2).encode())]


_BUILD = {"vmlinuz": b"kernel bytes", "initrd.img": b"initrd bytes",
          "cmdline.txt": b"console=ttyS0 rdinit=/init\n"}  # fmt: skip


# ---------------------------------------------------------------------------
# How each input reaches its parser


def _run_iomem(label: str, data: bytes) -> None:
    from builder.kexec.memmap import Kind, parse_iomem

    memory = parse_iomem(data.decode(errors="replace"), source="fuzz")
    if memory.of_kind(Kind.CRASH_KERNEL):
        memory.crash_region()
        memory.firmware_regions()


class _Scratch:
    """A directory for parsers that read files, written afresh for every input."""

    changed = ""  # the sysfs file the last input replaced

    @functools.cached_property
    def path(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="kdump-build-fuzz-"))


_SCRATCH = _Scratch()


def _run_sysfs(label: str, data: bytes) -> None:
    import shutil

    from builder.arch import Arch
    from builder.kexec.crashinfo import read_crash_info

    root = _SCRATCH.path / "sysfs"
    if not root.exists():
        shutil.copytree(SYSFS, root)
    if _SCRATCH.changed not in ("", label):  # put back what the previous input changed
        (root / _SCRATCH.changed).write_bytes((SYSFS / _SCRATCH.changed).read_bytes())
    (root / label).write_bytes(data)
    _SCRATCH.changed = label
    read_crash_info(root, Arch.X86_64)


def _run_initrd(label: str, data: bytes) -> None:
    from builder.binfmt.cpio import read_initrd, segments
    from builder.image.diff import diff_initrds

    entries = read_initrd(data, "fuzz")
    segments(data, "fuzz")
    diff_initrds(entries, entries[::2])


class _Sink(io.RawIOBase):
    """A seekable output that keeps only how far was written: offsets may be anything."""

    def __init__(self) -> None:
        self.position = 0
        self.end = 0

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset
        return offset

    def write(self, data: object) -> int:
        assert isinstance(data, bytes | bytearray | memoryview)
        self.position += len(data)
        self.end = max(self.end, self.position)
        return len(data)


def _run_flat(label: str, data: bytes) -> None:
    from builder.binfmt.flat import restore_stream

    sink = _Sink()
    restored = restore_stream(io.BytesIO(data), sink)  # type: ignore[arg-type]
    assert restored.size == sink.end


def _run_elf(label: str, data: bytes) -> None:
    from builder.binfmt.elf import SHT_REL, SHT_RELA, SHT_SYMTAB, ElfFile
    from builder.errors import FormatError

    elf = ElfFile(data, "fuzz", FormatError)
    for header in elf.program_headers:
        elf.segment_data(header)
    elf.interpreter()
    elf.dynamic()
    for section in elf.sections:
        elf.section_data(section)
        if section.type == SHT_SYMTAB:
            elf.symbols(section)
        elif section.type in (SHT_RELA, SHT_REL):
            elf.relocations(section)


def _run_modinfo(label: str, data: bytes) -> None:
    from builder.image.modules import ModuleInfo, decompress_module, parse_modinfo

    elf = decompress_module(data, label)
    ModuleInfo.from_modinfo(label, parse_modinfo(elf, label))


def _run_crashkernel(label: str, data: bytes) -> None:
    from builder.crashkernel_syntax import parse_crashkernel, parse_crashkernel_args, parse_size

    text = data.decode(errors="replace")
    for parse in (parse_crashkernel, parse_crashkernel_args, parse_size):
        try:
            parse(text)
        except KdumpBuildError as error:
            if "\n" in str(error):
                raise AssertionError(f"not one line: {error}") from error


def _run_recipe(label: str, data: bytes) -> None:
    from builder.recipe.parse import parse_recipe

    parse_recipe(data.decode(errors="replace"), _SCRATCH.path / "fuzz.toml")


def _run_kernel(label: str, data: bytes) -> None:
    from builder.binfmt.kernelimg import describe, parse_kernel_image

    json.dumps(describe(parse_kernel_image(data, "fuzz")))


def _run_package(label: str, data: bytes) -> None:
    from builder.image.packages import PackageRoot

    package = _SCRATCH.path / f"package{label}"
    package.write_bytes(data)
    root = PackageRoot([package])
    for path in root.walk_files("/"):
        root.read_bytes(path)


def _run_ssh_key(label: str, data: bytes) -> None:
    from builder.targets.ssh import dropbear_key

    dropbear_key(data, "fuzz")


def _run_manifest(label: str, data: bytes) -> None:
    from builder.kexec.layout.inputs import read_build_outputs

    outdir = _SCRATCH.path / "build"
    if not outdir.exists():
        outdir.mkdir()
        for name, contents in _BUILD.items():
            (outdir / name).write_bytes(contents)
    (outdir / "manifest.json").write_bytes(data)
    read_build_outputs(outdir).target_arch()


def _run_busybox(label: str, data: bytes) -> None:
    from builder.binfmt.kconfig import parse_kernel_config
    from builder.image.programs import busybox_applets, script_interpreter

    busybox_applets(data)
    script_interpreter(data)
    parse_kernel_config(data.decode(errors="replace"))


def _busybox_seeds() -> list[Seed]:
    table = b"\x7fELF" + bytes(64) + b"[\0[[\0ash\0cat\0sh\0\xff\0"
    return [("busybox", table), ("script", b"#!/bin/sh -e\necho\n"),
            ("config", b"CONFIG_KEXEC=y\n# CONFIG_X is not set\nCONFIG_NR_CPUS=64\n")]  # fmt: skip


TARGETS = (
    Target("/proc/iomem", _iomem_seeds, _run_iomem),
    Target("crash notes, vmcoreinfo, kcore headers (sysfs)", _sysfs_seeds, _run_sysfs),
    Target("initrd (inspect, diff)", _initrd_seeds, _run_initrd),
    Target("flattened dump (restore)", _flat_seeds, _run_flat),
    Target("ELF", _elf_seeds, _run_elf),
    Target(".modinfo", _modinfo_seeds, _run_modinfo),
    Target(
        "crashkernel=",
        lambda: [("spec", text.encode()) for text in CRASHKERNEL_SEEDS],
        _run_crashkernel,
    ),
    Target("recipe", _recipe_seeds, _run_recipe),
    Target("kernel image", _kernel_seeds, _run_kernel),
    Target("package archive", _package_seeds, _run_package),
    Target("ssh key", _ssh_key_seeds, _run_ssh_key),
    Target("manifest.json (layout, load)", _manifest_seeds, _run_manifest),
    Target("busybox applets, script, kernel config", _busybox_seeds, _run_busybox),
)
