"""kdump-load.plan: everything about a crash load that is known when the capture is built.

The build writes it beside the capture (OUTDIR/kdump-load.plan); the static
loader kdump-load (builder/kexec/loader/, C) completes it with the live
values only the device has: the memory map, crash notes, vmcoreinfo, kcore
headers, the booted device tree. The Python planners (builder/kexec/layout/)
take the same build-time values from the functions here, so both complete
one plan; tests/unit/kexec/test_kdump_load.py shows byte identity of the two
over every captured guest.

Format: text, one ``key value...`` line each, numbers as ``0x`` hex,
the first line ``kdump-load-plan 1``. Keys (all architectures)::

    arch NAME                  elf-machine N           kexec-flags N
    kernel|initrd|cmdline FILE SIZE SHA256     the build's outputs, as manifest.json
    kernel-text-window LOW HIGH | kernel-text-above-linear-map    (kcore rule)
    backup 0|1                 recipe kernel.backup_region
    purgatory-bytes HEX        relocated for address 0
    purgatory-memsz/-align/-entry/-stack-top N
    purgatory-symbol NAME OFFSET               the patched symbols
    purgatory-registers NAME...                purgatory_entry_regs order
    purgatory-fixup64 OFFSET...                u64 words that get the load address added
    digest-prefix KBUF KMEM IBUF IMEM H0..H7   the purgatory digest's state after the kernel
                                               and initrd segments (digest_prefix.py)

plus each architecture's own (its module here, named after it).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Iterable

from builder.arch import Arch, KernelTextLookup, arch_info
from builder.errors import LayoutError
from builder.kexec.layout.core import KEXEC_ON_CRASH
from builder.kexec.plan.digest_prefix import digest_prefix_line
from builder.kexec.purgatory.loader import absolute_places
from builder.kexec.purgatory.record import PurgatoryRecord, purgatory_records

__all__ = ["PLAN_FILE", "PLAN_VERSION", "BuildFiles", "plan_text", "purgatory_lines"]

PLAN_FILE = "kdump-load.plan"
PLAN_VERSION = 1
_PATCHED = ("purgatory_sha256_digest", "purgatory_sha256_regions", "purgatory_entry_regs",
            "purgatory_backup")  # fmt: skip
# Two load addresses to prove the fixups: one below 4 GiB, one far above it.
_PROOF_ADDRESSES = (0x7F000000, 0x12_3456_0000)

BuildFiles = tuple[tuple[str, str, bytes], ...]
"""(plan key, file name, bytes) of the build's kernel, initrd and command line."""


def _line(key: str, *values: int | str) -> str:
    return " ".join([key, *(f"{v:#x}" if isinstance(v, int) else v for v in values)])


def purgatory_lines(record: PurgatoryRecord) -> list[str]:
    """The purgatory relocated for address 0, its fixups and patched symbols, as plan lines.

    The fixups are checked here: the image at 0 plus each fixup must be
    byte for byte the purgatory the Python loader relocates for two other
    addresses, or the plan is refused.
    """
    base = record.load(0)
    fixups = absolute_places(record.shipped_object(), record.relocations)
    for address in _PROOF_ADDRESSES:
        address -= address % max(base.alignment, 1)
        moved = bytearray(base.buffer)
        for offset in fixups:
            word = int.from_bytes(moved[offset : offset + 8], "little")
            moved[offset : offset + 8] = ((word + address) % (1 << 64)).to_bytes(8, "little")
        if bytes(moved) != record.load(address).buffer:
            raise LayoutError(
                f"purgatory-{record.arch.value}: moving it by fixups does not give the "
                f"relocated bytes at {address:#x}"
            )
    stack, stack_size = base.symbol("purgatory_stack")
    lines = [
        _line("purgatory-memsz", base.memsz),
        _line("purgatory-align", base.alignment),
        _line("purgatory-entry", base.entry),
        _line("purgatory-stack-top", stack + stack_size),
        *(_line("purgatory-symbol", name, base.symbol(name)[0]) for name in _PATCHED),
        _line("purgatory-registers", *record.entry_registers),
    ]
    for start in range(0, len(fixups), 64):
        lines.append(_line("purgatory-fixup64", *fixups[start : start + 64]))
    lines.append("purgatory-bytes " + base.buffer.hex())
    return lines


def _kernel_text_line(arch: Arch) -> str:
    info = arch_info(arch)
    if info.kernel_text is KernelTextLookup.ABOVE_LINEAR_MAP:
        return "kernel-text-above-linear-map"
    window = info.kernel_text_window
    if window is None:
        raise LayoutError(f"no kernel text rule for {arch.value}")
    return _line("kernel-text-window", *window)


def _arch_lines(arch: Arch, kernel: bytes, name: str) -> list[str]:
    module = f"{__name__}.{arch.value}"
    if importlib.util.find_spec(module) is None:
        return []
    lines: list[str] = importlib.import_module(module).plan_lines(kernel, name)
    return lines


def plan_text(arch: Arch, files: BuildFiles, *, backup: bool) -> bytes:
    """The whole kdump-load.plan of a build for `arch`."""
    info = arch_info(arch)
    record = purgatory_records().get(arch)
    if record is None:
        raise LayoutError(f"no purgatory for {arch.value}: no kdump-load plan")
    kernel = next(data for key, _name, data in files if key == "kernel")
    kernel_name = next(name for key, name, _data in files if key == "kernel")
    initrd = next((data for key, _name, data in files if key == "initrd"), b"")
    arch_lines = _arch_lines(arch, kernel, kernel_name)
    lines: Iterable[str] = [
        f"kdump-load-plan {PLAN_VERSION}",
        f"arch {arch.value}",
        _line("elf-machine", info.elf_machine),
        _line("kexec-flags", KEXEC_ON_CRASH | info.kexec_arch),
        *(
            _line(key, name, len(data), hashlib.sha256(data).hexdigest())
            for key, name, data in files
        ),
        _kernel_text_line(arch),
        _line("backup", int(backup)),
        *arch_lines,
        *digest_prefix_line(arch_lines, kernel, initrd),
        *purgatory_lines(record),
    ]
    return ("\n".join(lines) + "\n").encode()
