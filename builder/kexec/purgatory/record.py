"""One record per architecture's purgatory: what the loader and scripts/build-purgatory share.

Each architecture's module in this package (named after it) holds a
`PURGATORY` record: its relocation table, the order of its entry
registers, and from its architecture the names of its shipped object and of
the toolchain file that says which gcc and ld built it. The loader relocates
with the table; scripts/build-purgatory asks this module (run as
``python3 -m builder.kexec.purgatory.record``) for the same records, so the
relocation types it accepts in a fresh object are the loader's own.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass

from builder.arch import Arch
from builder.errors import LayoutError
from builder.kexec.purgatory.loader import LoadedPurgatory, RelocationRules, load_purgatory
from builder.kexec.purgatory.patch import registers_block, shipped_object

__all__ = ["PurgatoryRecord", "purgatory_records", "script_lines"]

_PACKAGE = "builder.kexec.purgatory"


@dataclass(frozen=True)
class PurgatoryRecord:
    """One architecture's purgatory: the object, its toolchain file, relocations, registers."""

    arch: Arch
    relocations: RelocationRules
    entry_registers: tuple[str, ...]  # the u64 slots of purgatory_entry_regs, in order
    entry_alignment: int = 1  # what the purgatory's own entry point must be aligned to
    entry_alignment_reason: str = ""  # why, for the message

    @property
    def object_name(self) -> str:
        """The shipped relocatable object, in this package.

        >>> purgatory_records()[Arch.X86_64].object_name
        'purgatory-x86_64.o'
        """
        return f"purgatory-{self.arch.value}.o"

    @property
    def toolchain_name(self) -> str:
        """The file beside the object naming the gcc and ld that built it."""
        return f"purgatory-{self.arch.value}.toolchain"

    def relocation_names(self) -> list[str]:
        """The relocation types the loader applies, by their ELF names.

        >>> purgatory_records()[Arch.X86_64].relocation_names()[:2]
        ['R_X86_64_64', 'R_X86_64_PC32']
        """
        return [rule.name for rule in self.relocations.rules.values() if rule is not None]

    def shipped_object(self) -> bytes:
        """The prebuilt relocatable object shipped in the package."""
        return shipped_object(self.object_name)

    def load(self, load_address: int) -> LoadedPurgatory:
        """The shipped object relocated for `load_address` (not yet patched)."""
        purgatory = load_purgatory(self.shipped_object(), load_address, self.relocations)
        if purgatory.entry % self.entry_alignment:
            raise LayoutError(
                f"purgatory: entry {purgatory.entry:#x} is not {self.entry_alignment}-byte "
                f"aligned ({self.entry_alignment_reason})"
            )
        return purgatory

    def registers_block(self, registers: Mapping[str, int]) -> bytes:
        """The `purgatory_entry_regs` bytes; registers not named are zero."""
        return registers_block(self.entry_registers, registers, self.arch.value)


@functools.cache
def purgatory_records() -> Mapping[Arch, PurgatoryRecord]:
    """Every architecture's record: the `PURGATORY` of the module named after it.

    >>> sorted(arch.value for arch in purgatory_records())
    ['aarch64', 'riscv64', 'x86_64']
    """
    found: dict[Arch, PurgatoryRecord] = {}
    for arch in Arch:
        if importlib.util.find_spec(f"{_PACKAGE}.{arch.value}") is None:
            continue
        found[arch] = importlib.import_module(f"{_PACKAGE}.{arch.value}").PURGATORY
    return found


def script_lines() -> list[str]:
    """What scripts/build-purgatory reads: per architecture, its object, toolchain file
    and the relocation types the loader applies, one line each, fields tab-separated.

    >>> script_lines()[0].split("\\t")[:3]
    ['x86_64', 'purgatory-x86_64.o', 'purgatory-x86_64.toolchain']
    """
    lines = []
    for record in purgatory_records().values():
        relocations = " ".join(record.relocation_names())
        lines.append(
            "\t".join((record.arch.value, record.object_name, record.toolchain_name, relocations))
        )
    return lines


if __name__ == "__main__":
    # Run as a script this module is __main__; the records' class is the imported one's.
    from builder.kexec.purgatory import record

    print("\n".join(record.script_lines()))
