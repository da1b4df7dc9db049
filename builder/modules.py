"""Kernel modules: find them in a root, read `.modinfo`, order them for loading.

Distribution kernel packages ship no modules.dep (depmod runs at install),
so dependencies come from each module's own `.modinfo` section.
"""

from __future__ import annotations

import gzip
import io
import lzma
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

import zstandard
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from builder.errors import ModuleError, SourceError
from builder.sources import Root

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def canonical_name(name: str) -> str:
    """Module names treat `-` and `_` alike; the kernel uses `_`.

    >>> canonical_name("crc32c-generic")
    'crc32c_generic'
    """
    return name.replace("-", "_")


def _module_name(path: str) -> str:
    base = posixpath.basename(path)
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            return canonical_name(base[: -len(suffix)])
    raise ValueError(path)


def decompress_module(data: bytes, path: str) -> bytes:
    """The ELF object inside a possibly compressed module file."""
    try:
        if path.endswith(".xz"):
            return lzma.decompress(data)
        if path.endswith(".zst"):
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        if path.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, zstandard.ZstdError, OSError, EOFError) as error:
        raise ModuleError(f"{path}: cannot decompress module ({error})") from None
    return data


def parse_modinfo(elf: bytes, path: str) -> dict[str, tuple[str, ...]]:
    """The key=value pairs of a module's `.modinfo` section; keys may repeat."""
    try:
        section = ELFFile(io.BytesIO(elf)).get_section_by_name(".modinfo")
    except (ELFError, ValueError, OSError) as error:
        raise ModuleError(f"{path}: not a kernel module ({error})") from None
    if section is None:
        raise ModuleError(f"{path}: not a kernel module (no .modinfo section)")
    info: dict[str, list[str]] = {}
    for raw in section.data().split(b"\0"):
        key, sep, value = raw.decode("utf-8", "replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return {key: tuple(values) for key, values in info.items()}


@dataclass(frozen=True)
class Module:
    """One loadable module: where it is, what it needs, what it is built for."""

    name: str
    path: str
    elf: bytes = field(repr=False)
    depends: tuple[str, ...]
    vermagic: str


class ModuleIndex:
    """The modules of one kernel version in a root.

    >>> index = ModuleIndex(root, "6.1.0-57-amd64")  # doctest: +SKIP
    >>> [m.name for m in index.load_order(["virtio_blk"], "initrd.modules")]  # doctest: +SKIP
    ['virtio', 'virtio_ring', 'virtio_blk']
    """

    def __init__(self, root: Root, kernel_version: str) -> None:
        self.root = root
        self.kernel_version = kernel_version
        self.base = f"/lib/modules/{kernel_version}"
        if not root.exists(self.base):
            raise ModuleError(
                f"{root.description}: no modules for kernel {kernel_version} ({self.base} missing)"
            )
        self.paths: dict[str, str] = {}
        for path in root.walk_files(self.base):
            if path.endswith(MODULE_SUFFIXES):
                self.paths.setdefault(_module_name(path), path)
        self.builtin = self._builtin_names()
        self._cache: dict[str, Module] = {}

    def _builtin_names(self) -> frozenset[str]:
        listing = f"{self.base}/modules.builtin"
        try:
            text = self.root.read_bytes(listing).decode()
        except SourceError:
            return frozenset()
        return frozenset(_module_name(line.strip()) for line in text.splitlines() if line.strip())

    def module(self, name: str, key: str) -> Module:
        """Read one module; `key` names the recipe key that asked for it, for errors."""
        name = canonical_name(name)
        if name in self._cache:
            return self._cache[name]
        path = self.paths.get(name)
        if path is None:
            raise ModuleError(
                f"{key}: module {name!r} not found for kernel {self.kernel_version} "
                f"in {self.root.description}"
            )
        elf = decompress_module(self.root.read_bytes(path), path)
        info = parse_modinfo(elf, path)
        vermagic = (info.get("vermagic") or ("",))[0]
        built_for = vermagic.split(" ")[0]
        if built_for != self.kernel_version:
            raise ModuleError(
                f"{key}: module {name} ({path}) is built for {built_for or 'an unknown kernel'}, "
                f"not the capture kernel {self.kernel_version}"
            )
        depends = tuple(
            canonical_name(dependency)
            for entry in info.get("depends", ())
            for dependency in entry.split(",")
            if dependency
        )
        module = Module(name, path, elf, depends, vermagic)
        self._cache[name] = module
        return module

    def load_order(self, names: Sequence[str], key: str) -> list[Module]:
        """Modules to load, dependencies before dependents, built-ins left out."""
        ordered: list[Module] = []
        done: set[str] = set()
        visiting: list[str] = []

        def visit(name: str) -> None:
            name = canonical_name(name)
            if name in done:
                return
            if name in visiting:
                cycle = " -> ".join([*visiting[visiting.index(name) :], name])
                raise ModuleError(f"{key}: module dependency cycle: {cycle}")
            if name in self.builtin and name not in self.paths:
                done.add(name)
                return
            visiting.append(name)
            module = self.module(name, key)
            for dependency in module.depends:
                visit(dependency)
            visiting.pop()
            done.add(name)
            ordered.append(module)

        for name in names:
            visit(name)
        return ordered
