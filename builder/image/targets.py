"""What each dump target adds to the capture initrd beyond the recipe's lists.

`local` needs nothing more (its filesystem modules are the recipe's choice).
`raw` needs nothing more either. `nfs` adds the kernel's NFS client modules
and the DHCP script; `ssh` adds dropbear's dbclient with its libraries, the
key (mode 0600, converted to dropbear's format), known_hosts and a minimal
/etc/passwd, and the DHCP script. Hook scripts named by `dump.pre` and
`dump.post` are copied for every target. Files named by the recipe are read
relative to the recipe; nothing else of the build host goes in.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field

from builder.errors import RecipeError, SourceError
from builder.image import runtime
from builder.image.fetch import default_cache_dir
from builder.image.initrd import InitrdPlan
from builder.image.libraries import library_closure, read_elf_info
from builder.image.sources import Root
from builder.recipe.model import Recipe

# The module that registers the NFS filesystem type each version mounts with;
# their .modinfo depends= bring sunrpc, lockd, grace and the rest.
NFS_MODULES = {"3": ("nfsv3",), "4": ("nfsv4",), "4.1": ("nfsv4",), "4.2": ("nfsv4",)}
# dbclient looks up its own user; the capture side runs as root.
PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"
GROUP = b"root:x:0:\n"

OPENSSH_KEY_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
OPENSSH_KEY_END = b"-----END OPENSSH PRIVATE KEY-----"
OPENSSH_MAGIC = b"openssh-key-v1\0"
ED25519 = b"ssh-ed25519"


@dataclass
class TargetContent:
    """Modules, binaries and generated files a dump target needs in the initrd."""

    modules: list[str] = field(default_factory=list)
    binaries: list[str] = field(default_factory=list)
    # path -> (data, mode)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)


def _read_recipe_file(recipe: Recipe, key: str, name: str) -> bytes:
    path = recipe.relative(name)
    try:
        return path.read_bytes()
    except OSError as error:
        raise RecipeError(f"{recipe.path}: {key}: cannot read {path} ({error.strerror})") from None


class _Reader:
    """Reads SSH wire-format fields (uint32 lengths, big-endian)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def uint32(self) -> int:
        if self.offset + 4 > len(self.data):
            raise ValueError("truncated")
        (value,) = struct.unpack_from(">I", self.data, self.offset)
        self.offset += 4
        return int(value)

    def string(self) -> bytes:
        length = self.uint32()
        if self.offset + length > len(self.data):
            raise ValueError("truncated")
        value = self.data[self.offset : self.offset + length]
        self.offset += length
        return value


def _ssh_string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def dropbear_key(data: bytes, name: str) -> bytes:
    """An ed25519 private key in dropbear's format, from OpenSSH's or dropbear's own.

    dropbear's dbclient (2022.83) reads only its own format: the string
    "ssh-ed25519" then one string of the 32-byte seed and the 32-byte public key.
    OpenSSH's unencrypted "openssh-key-v1" container holds the same 64 bytes.
    """
    try:
        if data.startswith(_ssh_string(ED25519)):
            reader = _Reader(data)
            reader.string()
            if len(reader.string()) != 64 or reader.offset != len(data):
                raise ValueError("not a dropbear ed25519 key")
            return data
        text = data.strip()
        if not (text.startswith(OPENSSH_KEY_BEGIN) and text.endswith(OPENSSH_KEY_END)):
            raise ValueError("neither an OpenSSH nor a dropbear private key")
        body = text[len(OPENSSH_KEY_BEGIN) : -len(OPENSSH_KEY_END)]
        blob = base64.b64decode(b"".join(body.split()), validate=True)
        if not blob.startswith(OPENSSH_MAGIC):
            raise ValueError("not an openssh-key-v1 container")
        reader = _Reader(blob[len(OPENSSH_MAGIC) :])
        cipher, kdf = reader.string(), reader.string()
        reader.string()  # kdf options
        if cipher != b"none" or kdf != b"none":
            raise ValueError("the key is passphrase-protected; the capture side cannot ask")
        if reader.uint32() != 1:
            raise ValueError("expected exactly one key")
        reader.string()  # public key blob
        private = _Reader(reader.string())
        if private.uint32() != private.uint32():
            raise ValueError("check numbers differ (corrupt key)")
        kind = private.string()
        if kind != ED25519:
            raise ValueError(f"{kind.decode(errors='replace')} keys are not supported, use ed25519")
        public = private.string()
        secret = private.string()
        if len(public) != 32 or len(secret) != 64 or secret[32:] != public:
            raise ValueError("malformed ed25519 key")
        return _ssh_string(ED25519) + _ssh_string(secret)
    except (ValueError, binascii.Error) as error:
        raise RecipeError(f"{name}: {error}") from None


def target_content(recipe: Recipe) -> TargetContent:
    """What `recipe.dump.target` and the hooks add to the initrd."""
    dump = recipe.dump
    content = TargetContent()
    if dump.target in ("nfs", "ssh") and dump.network == "dhcp":
        content.files[runtime.UDHCPC_SCRIPT_PATH] = (runtime.udhcpc_script(), 0o755)
    if dump.target == "nfs":
        content.modules += NFS_MODULES[dump.nfs_version]
    if dump.target == "ssh":
        content.binaries.append(dump.ssh_client)
        key = _read_recipe_file(recipe, "dump.ssh_key", dump.ssh_key)
        converted = dropbear_key(
            key, f"{recipe.path}: dump.ssh_key: {recipe.relative(dump.ssh_key)}"
        )
        content.files[runtime.SSH_KEY_PATH] = (converted, 0o600)
        if dump.ssh_known_hosts:
            known = _read_recipe_file(recipe, "dump.ssh_known_hosts", dump.ssh_known_hosts)
            content.files[runtime.SSH_KNOWN_HOSTS_PATH] = (known, 0o644)
        content.files["/etc/passwd"] = (PASSWD, 0o644)
        content.files["/etc/group"] = (GROUP, 0o644)
    for stage in ("pre", "post"):
        for index, name in enumerate(getattr(dump, stage)):
            script = _read_recipe_file(recipe, f"dump.{stage}: item {index}", name)
            path = f"{runtime.HOOK_DIRECTORIES[stage]}/{index:02d}"
            content.files[path] = (script, 0o755)
    return content


def check_collector(recipe: Recipe, root: Root) -> None:
    """Refuse a page compression the recipe's makedumpfile was built without.

    Feature detection without running the (maybe foreign) binary: makedumpfile
    links libzstd only when built with zstd support.
    """
    if recipe.dump.collector != "makedumpfile" or recipe.dump.compression != "zstd":
        return
    binary = next(path for path in recipe.initrd.binaries if path.endswith("/makedumpfile"))
    info = read_elf_info(root.read_bytes(binary), binary, default_cache_dir() / "elf")
    if info is None or not any(name.startswith("libzstd.so") for name in info.needed):
        raise RecipeError(
            f"{recipe.path}: dump.compression: {binary} in {root.description} is built "
            "without zstd (it does not link libzstd); use lzo or zlib"
        )


def plan_target(recipe: Recipe, root: Root, plan: InitrdPlan) -> None:
    """Add the dump target's binaries and files to `plan`.

    Its modules (`target_content(recipe).modules`) are placed by the build
    with the recipe's own, so both share one load order.
    """
    check_collector(recipe, root)
    content = target_content(recipe)
    for binary in content.binaries:
        try:
            plan.copy_from(root, binary)
        except SourceError as error:
            raise RecipeError(f"{recipe.path}: dump.ssh_client: {error}") from None
    if content.binaries:
        for library in library_closure(
            root,
            content.binaries,
            recipe.target.arch,
            "dump.ssh_client",
            default_cache_dir() / "elf",
        ):
            plan.copy_from(root, library)
    for path, (data, mode) in sorted(content.files.items()):
        plan.file(path, data, mode)
