"""What every architecture's purgatory is patched with, and where its object ships.

Each shipped object (built by scripts/build-purgatory from this directory's
entry-<arch>.S, purgatory.c and sha256.c) has the same patched symbols in
.data:

- `purgatory_sha256_digest` (32 bytes) and `purgatory_sha256_regions`
  (16 x {u64 start, u64 len}): what the purgatory verifies (regions.py);
- `purgatory_entry_regs`: the registers the capture kernel starts with,
  one u64 each in the order the architecture's module lists;
- `purgatory_backup` ({u64 src, dst, size}): memory copied after the check;
  size 0 copies nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from importlib import resources

from builder.errors import LayoutError
from builder.kexec.purgatory.loader import LoadedPurgatory
from builder.kexec.purgatory.regions import Segment, regions_digest, regions_table

__all__ = ["NO_BACKUP", "patch_purgatory", "registers_block", "shipped_object"]

NO_BACKUP = bytes(24)  # purgatory_backup with size 0
_U64_LIMIT = 1 << 64


def shipped_object(name: str) -> bytes:
    """The prebuilt relocatable object `name` shipped in the package.

    >>> shipped_object("purgatory-x86_64.o")[:4]
    b'\\x7fELF'
    """
    return (resources.files("builder.kexec.purgatory") / name).read_bytes()


def registers_block(order: Sequence[str], registers: Mapping[str, int], arch: str) -> bytes:
    """The `purgatory_entry_regs` bytes: one u64 per name in `order`, unnamed ones zero.

    >>> registers_block(("a", "b"), {"b": 0x1000}, "test").hex()
    '00000000000000000010000000000000'
    >>> registers_block(("a",), {"z": 1}, "test")
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: purgatory: unknown test registers ['z']
    """
    unknown = set(registers) - set(order)
    if unknown:
        raise LayoutError(f"purgatory: unknown {arch} registers {sorted(unknown)}")
    values = [registers.get(name, 0) for name in order]
    for name, value in zip(order, values, strict=True):
        if not 0 <= value < _U64_LIMIT:
            raise LayoutError(f"purgatory: register {name} value {value:#x} is not a u64")
    return struct.pack(f"<{len(values)}Q", *values)


def patch_purgatory(
    purgatory: LoadedPurgatory,
    segments: Sequence[Segment],
    *,
    registers: bytes,
    backup: bytes = NO_BACKUP,
) -> LoadedPurgatory:
    """Patch a loaded purgatory to verify `segments`, then start with `registers`.

    `segments` are every other segment as `(start, data, memsz)`; none may
    overlap the purgatory itself (it would hash its own patched bytes).
    """
    purgatory_end = purgatory.load_address + purgatory.memsz
    for index, (start, _data, memsz) in enumerate(segments):
        if start < purgatory_end and purgatory.load_address < start + memsz:
            raise LayoutError(
                f"purgatory: segment {index} at {start:#x} overlaps the purgatory itself"
            )
    return (
        purgatory.patch("purgatory_sha256_digest", regions_digest(segments))
        .patch("purgatory_sha256_regions", regions_table(segments))
        .patch("purgatory_entry_regs", registers)
        .patch("purgatory_backup", backup)
    )
