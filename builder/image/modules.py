"""Kernel modules: find them in a root, read `.modinfo`, resolve names, order them.

Distribution kernel packages ship no modules.dep or modules.alias (depmod
runs at install), so everything comes from each module's own `.modinfo`
section (`depends=`, `softdep=`, `alias=`, `firmware=`, `vermagic=`) and from
what the kernel build itself leaves: `modules.builtin` and
`modules.builtin.modinfo` name the modules compiled into the kernel, with
their aliases. Reading the `.modinfo` of all ~4000 modules costs a pass over
them, so the resulting index is cached under the root's fingerprint of the
modules directory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from builder.binfmt.elf import ElfFile
from builder.binfmt.kconfig import parse_kernel_config
from builder.compression import SUFFIXES, Compression, by_suffix, decompress
from builder.errors import ModuleError, SourceError
from builder.image.cache import load_json_entry, store_cache_entry
from builder.image.layouts import find_config
from builder.image.sources import Root

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
# Kernel config options that let the kernel decompress a module itself
# (finit_module with MODULE_INIT_COMPRESSED_FILE, Linux 5.17, commit b1ae6dc41eaa).
MODULE_DECOMPRESS_OPTION = {
    Compression.XZ: "CONFIG_MODULE_COMPRESS_XZ",
    Compression.GZIP: "CONFIG_MODULE_COMPRESS_GZIP",
    Compression.ZSTD: "CONFIG_MODULE_COMPRESS_ZSTD",
}
# What busybox insmod unpacks itself when finit_module refuses a compressed file.
BUSYBOX_MODULE_COMPRESSIONS = (Compression.XZ, Compression.GZIP)
# Compressed firmware the kernel's firmware loader reads itself (drivers/base/firmware_loader).
FIRMWARE_DECOMPRESS_OPTION = {
    Compression.XZ: "CONFIG_FW_LOADER_COMPRESS_XZ",
    Compression.ZSTD: "CONFIG_FW_LOADER_COMPRESS_ZSTD",
}
# The forms a firmware file is looked for in, in order.
FIRMWARE_FORMS = (Compression.NONE, Compression.ZSTD, Compression.XZ)
_SUFFIX = {kind: suffix for suffix, kind in SUFFIXES.items()} | {Compression.NONE: ""}
FIRMWARE_DIRS = ("/lib/firmware/updates", "/lib/firmware")
INDEX_FORMAT = 1


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
    """The contents inside a possibly compressed module (or firmware) file, by its suffix.

    >>> import lzma
    >>> decompress_module(lzma.compress(b"\\x7fELF"), "ext4.ko.xz"), decompress_module(b"x", "a.ko")
    (b'\\x7fELF', b'x')
    """
    return decompress(data, by_suffix(path), where=path, error=ModuleError)


def parse_modinfo(elf: bytes, path: str) -> dict[str, tuple[str, ...]]:
    """The key=value pairs of a module's `.modinfo` section; keys may repeat.

    >>> parse_modinfo(b"\\x7fELF\\x02\\x01\\x01" + bytes(57), "bad.ko")
    Traceback (most recent call last):
    ...
    builder.errors.ModuleError: bad.ko: not a kernel module (no .modinfo section)
    """
    module = ElfFile(elf, path, ModuleError)
    section = module.section(".modinfo")
    if section is None:
        raise ModuleError(f"{path}: not a kernel module (no .modinfo section)")
    info: dict[str, list[str]] = {}
    for raw in module.section_data(section).split(b"\0"):
        key, sep, value = raw.decode("utf-8", "replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return {key: tuple(values) for key, values in info.items()}


def parse_softdep(entries: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`softdep=` values (`pre: a b post: c`) as (pre, post) module names.

    >>> parse_softdep(["pre: crc32c post: x-y"])
    (('crc32c',), ('x_y',))
    """
    pre: list[str] = []
    post: list[str] = []
    for entry in entries:
        current: list[str] | None = None
        for word in entry.split():
            if word == "pre:":
                current = pre
            elif word == "post:":
                current = post
            elif current is not None:
                current.append(canonical_name(word))
    return tuple(pre), tuple(post)


@dataclass(frozen=True)
class ModuleInfo:
    """What the index knows of one loadable module, without its contents."""

    name: str
    path: str
    depends: tuple[str, ...]
    softdep_pre: tuple[str, ...]
    softdep_post: tuple[str, ...]
    aliases: tuple[str, ...]
    firmware: tuple[str, ...]
    vermagic: str

    @classmethod
    def from_modinfo(cls, path: str, info: dict[str, tuple[str, ...]]) -> ModuleInfo:
        pre, post = parse_softdep(info.get("softdep", ()))
        depends = tuple(
            canonical_name(dependency)
            for entry in info.get("depends", ())
            for dependency in entry.split(",")
            if dependency
        )
        return cls(
            _module_name(path),
            path,
            depends,
            pre,
            post,
            info.get("alias", ()),
            info.get("firmware", ()),
            (info.get("vermagic") or ("",))[0],
        )


def _info_from_json(row: dict[str, object]) -> ModuleInfo:
    def strings(key: str) -> tuple[str, ...]:
        value = row[key]
        if not isinstance(value, list):
            raise TypeError(key)
        return tuple(str(item) for item in value)

    return ModuleInfo(
        str(row["name"]),
        str(row["path"]),
        strings("depends"),
        strings("softdep_pre"),
        strings("softdep_post"),
        strings("aliases"),
        strings("firmware"),
        str(row["vermagic"]),
    )


@dataclass(frozen=True)
class Module:
    """One loadable module: where it is, what it needs, what it is built for."""

    name: str
    path: str
    elf: bytes = field(repr=False)
    depends: tuple[str, ...]
    vermagic: str
    softdep_pre: tuple[str, ...] = ()
    softdep_post: tuple[str, ...] = ()
    firmware: tuple[str, ...] = ()
    raw: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Firmware:
    """A firmware file a module names, as stored in the initrd."""

    path: str
    data: bytes = field(repr=False)
    source: str


class ModuleIndex:
    """The modules of one kernel version in a root: names, aliases, built-ins.

    Two modules in a root of their own, each an ELF file with a `.modinfo`:

    >>> import tempfile
    >>> from builder.binfmt.elf import _tiny_elf
    >>> from builder.image.sources import DirectoryRoot
    >>> root = Path(tempfile.mkdtemp())
    >>> kernel = root / "lib/modules/6.1.0-9-amd64/kernel"
    >>> kernel.mkdir(parents=True)
    >>> for name, info in (("virtio", ""), ("virtio_blk", "depends=virtio\\0alias=virtio:d2v*")):
    ...     modinfo = f"vermagic=6.1.0-9-amd64 SMP\\0{info}\\0".encode()
    ...     _ = (kernel / f"{name}.ko").write_bytes(_tiny_elf({".modinfo": modinfo}))
    >>> index = ModuleIndex(DirectoryRoot(root), "6.1.0-9-amd64")
    >>> [module.name for module in index.load_order(["virtio_blk"], "initrd.modules")]
    ['virtio', 'virtio_blk']
    >>> index.resolve("virtio:d2v1af4", "initrd.modules")
    ['virtio_blk']
    """

    def __init__(self, root: Root, kernel_version: str, cache_dir: Path | None = None) -> None:
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
        self.builtin, self.builtin_aliases = self._builtin()
        self.config = self._kernel_config()
        self._cache_dir = cache_dir
        self._infos: dict[str, ModuleInfo] | None = None
        self._exact_aliases: dict[str, list[str]] = {}
        # (literal prefix, pattern, module): the prefix filters before fnmatch compiles.
        self._pattern_aliases: list[Sequence[str]] = []
        # The alias tables are all a build needs of the infos: a warm build
        # loads them ready-made instead of the ~4000 infos they derive from.
        alias_file = self._cache_file("aliases")
        if not self._load_aliases(alias_file):
            for info in self.infos.values():
                self._add_aliases(info.name, info.aliases)
            for name, aliases in sorted(self.builtin_aliases.items()):
                self._add_aliases(name, aliases)
            if alias_file is not None:
                tables = {
                    "modules": sorted(self.paths),
                    "exact": self._exact_aliases,
                    "patterns": self._pattern_aliases,
                }
                store_cache_entry(alias_file, json.dumps(tables).encode())
        self._cache: dict[str, Module] = {}

    @property
    def infos(self) -> dict[str, ModuleInfo]:
        """Every loadable module's info, read from the cache or the modules themselves."""
        if self._infos is None:
            self._infos = self._load_infos()
        return self._infos

    def _cache_file(self, kind: str) -> Path | None:
        """Where derived data of this root's modules is cached, or None if not cacheable."""
        if self._cache_dir is None:
            return None
        fingerprint = self.root.fingerprint(self.base)
        if fingerprint is None:
            return None
        key = hashlib.sha256(f"{INDEX_FORMAT}:{fingerprint}".encode()).hexdigest()
        return self._cache_dir / (f"{key}.json" if kind == "infos" else f"{key}.{kind}.json")

    def _load_aliases(self, alias_file: Path | None) -> bool:
        if alias_file is None:
            return False
        try:
            tables: Any = load_json_entry(alias_file)
            exact, patterns = tables["exact"], tables["patterns"]
            if (
                tables["modules"] != sorted(self.paths)
                or not isinstance(exact, dict)
                or not isinstance(patterns, list)
            ):
                return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self._exact_aliases, self._pattern_aliases = exact, patterns
        return True

    def _add_aliases(self, name: str, aliases: Iterable[str]) -> None:
        for alias in aliases:
            if "*" in alias or "?" in alias or "[" in alias:
                pattern = canonical_name(alias)
                literal = len(pattern)
                for char in "*?[":
                    if char in pattern:
                        literal = min(literal, pattern.index(char))
                self._pattern_aliases.append((pattern[:literal], pattern, name))
            else:
                self._exact_aliases.setdefault(canonical_name(alias), []).append(name)

    def _builtin(self) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
        names: set[str] = set()
        try:
            text = self.root.read_bytes(f"{self.base}/modules.builtin").decode()
            names.update(_module_name(line.strip()) for line in text.splitlines() if line.strip())
        except SourceError:
            pass
        aliases: dict[str, list[str]] = {}
        try:
            raw = self.root.read_bytes(f"{self.base}/modules.builtin.modinfo")
        except SourceError:
            raw = b""
        for item in raw.split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            module, dot, field_name = key.partition(".")
            if sep and dot:
                names.add(canonical_name(module))
                if field_name == "alias":
                    aliases.setdefault(canonical_name(module), []).append(value)
        return frozenset(names), {name: tuple(values) for name, values in aliases.items()}

    def _kernel_config(self) -> dict[str, str]:
        path = find_config(self.root, self.kernel_version)
        if path is None:
            return {}
        try:
            text = self.root.read_bytes(path)
        except SourceError:
            return {}
        return parse_kernel_config(text.decode("utf-8", "replace"))

    def _load_infos(self) -> dict[str, ModuleInfo]:
        cache_file = self._cache_file("infos")
        if cache_file is not None:
            try:
                rows: Any = load_json_entry(cache_file)
                infos = {row["name"]: _info_from_json(row) for row in rows}
                if set(infos) == set(self.paths):
                    return infos
            except (OSError, ValueError, KeyError, TypeError):
                pass
        infos = {}
        for name, path in sorted(self.paths.items()):
            raw = self.root.read_bytes(path, keep=False)
            infos[name] = ModuleInfo.from_modinfo(
                path, parse_modinfo(decompress_module(raw, path), path)
            )
        if cache_file is not None:
            store_cache_entry(
                cache_file, json.dumps([asdict(info) for info in infos.values()]).encode()
            )
        return infos

    def resolve(self, name: str, key: str) -> list[str]:
        """Loadable modules a name stands for: itself, or every module with a matching alias.

        An empty list means the kernel has it built in. Aliases match with
        shell-pattern semantics, as modprobe's do (`pci:v00001AF4d*`).
        """
        name = canonical_name(name)
        if name in self.paths:
            return [name]
        if name in self.builtin:
            return []
        matches = set(self._exact_aliases.get(name, ()))
        for prefix, pattern, module in self._pattern_aliases:
            if name.startswith(prefix) and fnmatch.fnmatchcase(name, pattern):
                matches.add(module)
        if not matches:
            raise ModuleError(
                f"{key}: module {name!r} not found for kernel {self.kernel_version} "
                f"in {self.root.description}"
            )
        if matches & self.builtin:
            return []
        return sorted(matches)

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
        raw = self.root.read_bytes(path)
        elf = decompress_module(raw, path)
        info = ModuleInfo.from_modinfo(path, parse_modinfo(elf, path))
        built_for = info.vermagic.split(" ")[0]
        if built_for != self.kernel_version:
            raise ModuleError(
                f"{key}: module {name} ({path}) is built for {built_for or 'an unknown kernel'}, "
                f"not the capture kernel {self.kernel_version}"
            )
        module = Module(
            name,
            path,
            elf,
            info.depends,
            info.vermagic,
            info.softdep_pre,
            info.softdep_post,
            info.firmware,
            raw,
        )
        self._cache[name] = module
        return module

    def load_order(self, names: Sequence[str], key: str) -> list[Module]:
        """Modules to load, each after its dependencies, built-ins left out.

        Hard dependencies (`depends=`) must be loadable and acyclic; soft
        ones (`softdep=` pre/post) are followed where they exist and are
        dropped where they would close a cycle, so the order always works.
        """
        ordered: list[Module] = []
        done: set[str] = set()
        visiting: list[str] = []
        post_queue: list[str] = []

        def visit(name: str, soft: bool) -> None:
            if name in done:
                return
            if name in visiting:
                if soft:
                    return
                cycle = " -> ".join([*visiting[visiting.index(name) :], name])
                raise ModuleError(f"{key}: module dependency cycle: {cycle}")
            if name in self.builtin and name not in self.paths:
                done.add(name)
                return
            visiting.append(name)
            module = self.module(name, key)
            for dependency in module.softdep_pre:
                for resolved in self._resolve_soft(dependency):
                    visit(resolved, True)
            for dependency in module.depends:
                visit(dependency, soft)
            visiting.pop()
            done.add(name)
            ordered.append(module)
            for dependency in module.softdep_post:
                post_queue.extend(self._resolve_soft(dependency))

        for requested in names:
            for name in self.resolve(requested, key):
                visit(name, False)
            while post_queue:
                visit(post_queue.pop(0), True)
        return ordered

    def _resolve_soft(self, name: str) -> list[str]:
        try:
            return self.resolve(name, "softdep")
        except ModuleError:
            return []  # a soft dependency may be absent, as modprobe allows

    def stored_form(self, module: Module) -> tuple[str, bytes]:
        """Path and bytes of a module in the initrd.

        A compressed module stays compressed only when the kernel can
        decompress it itself (CONFIG_MODULE_DECOMPRESS and the matching
        CONFIG_MODULE_COMPRESS_*) and it is xz or gzip, which busybox insmod
        also unpacks (it calls finit_module without MODULE_INIT_COMPRESSED_FILE,
        then falls back to reading the file itself); otherwise it is stored as
        a plain `.ko`.
        """
        kind = by_suffix(module.path)
        keep = (
            kind in BUSYBOX_MODULE_COMPRESSIONS
            and self.config.get("CONFIG_MODULE_DECOMPRESS") == "y"
            and self.config.get(MODULE_DECOMPRESS_OPTION[kind]) == "y"
        )
        if keep:
            return module.path, module.raw
        return module.path.rsplit(".ko", 1)[0] + ".ko", module.elf

    def firmware(self, modules: Sequence[Module]) -> tuple[list[Firmware], list[str]]:
        """Firmware files the modules name, found in the root, and the names not found.

        Compressed firmware (`.xz`, `.zst`) stays compressed when the kernel's
        firmware loader reads that format, else it is stored decompressed
        under the plain name.
        """
        found: list[Firmware] = []
        missing: list[str] = []
        seen: set[str] = set()
        for module in modules:
            for name in module.firmware:
                if name in seen:
                    continue
                seen.add(name)
                item = self._find_firmware(name)
                if item is None:
                    missing.append(name)
                else:
                    found.append(item)
        return found, missing

    def _find_firmware(self, name: str) -> Firmware | None:
        for directory in FIRMWARE_DIRS:
            for kind in FIRMWARE_FORMS:
                suffix = _SUFFIX[kind]
                path = f"{directory}/{name}{suffix}"
                if not self.root.exists(path):
                    continue
                data = self.root.read_bytes(path)
                option = FIRMWARE_DECOMPRESS_OPTION.get(kind)
                if option is None or self.config.get(option) == "y":
                    return Firmware(f"/lib/firmware/{name}{suffix}", data, path)
                return Firmware(f"/lib/firmware/{name}", decompress_module(data, path), path)
        return None
