"""Tests for builder/kexec/purgatory: the shipped object, its SHA-256, the ET_REL loader.

Independent oracles: hashlib for SHA-256, GNU ld + objcopy for the relocated
image, and the shipped object's own code run on the host (its C part and the
register hand-off are unprivileged, so they run in this process).
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import mmap
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import LayoutError
from builder.kexec.purgatory.loader import LoadedPurgatory, RelocationRules, load_purgatory
from builder.kexec.purgatory.regions import regions_digest, regions_table
from builder.kexec.purgatory.x86_64 import (
    ENTRY_REGISTERS,
    PURGATORY,
    RELOCATIONS,
    BackupRegion,
    build_x86_64_purgatory,
    entry_registers_block,
    load_x86_64_purgatory,
    patch_x86_64_purgatory,
)
from tests.support import purgatory_qemu
from tests.support.paths import C_SOURCES, REPO

SOURCES = REPO / "builder" / "kexec" / "purgatory"
LOW = 0x7F000000  # below 2 GiB
HIGH = 0x1_2345_6000  # above 4 GiB: the crash region may be up there

PATCHED_SYMBOLS = {
    "purgatory_sha256_digest": 32,
    "purgatory_sha256_regions": 256,
    "purgatory_entry_regs": 17 * 8,
    "purgatory_backup": 24,
}


def _run(command: Sequence[str | Path], cwd: Path | None = None) -> None:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, command))}: {result.stderr}"


def _compile_object(tmp: Path, name: str, source: str, *flags: str) -> bytes:
    """Compile a small C or assembly source to a relocatable object."""
    path = tmp / name
    path.write_text(source)
    _run(["gcc", "-c", "-O2", "-fno-asynchronous-unwind-tables", *flags, path, "-o", tmp / "t.o"])
    return (tmp / "t.o").read_bytes()


# --- the shipped object -------------------------------------------------------


def test_shipped_objects_are_what_the_sources_build(tmp_path: Path) -> None:
    _run([REPO / "scripts" / "build-purgatory", tmp_path])
    built = sorted(path.name for path in tmp_path.glob("purgatory-*.o"))
    assert built == ["purgatory-aarch64.o", "purgatory-riscv64.o", "purgatory-x86_64.o"]
    for name in built:
        rebuilt = (tmp_path / name).read_bytes()
        toolchain = name.replace(".o", ".toolchain")
        recorded = (SOURCES / toolchain).read_text()
        current = (tmp_path / toolchain).read_text()
        assert rebuilt == (SOURCES / name).read_bytes(), (
            f"builder/kexec/purgatory/{name} is stale: run scripts/build-purgatory "
            f"(shipped with:\n{recorded}built here with:\n{current})"
        )


def test_shipped_object_shape() -> None:
    elf: Any = ELFFile(io.BytesIO(PURGATORY.shipped_object()))  # the oracle, untyped
    assert elf["e_type"] == "ET_REL"
    assert elf["e_machine"] == "EM_X86_64"
    names = {section.name for section in elf.iter_sections()}
    assert not names & {".eh_frame", ".comment", ".note.gnu.property"}
    assert not any(name.startswith(".debug") for name in names)
    symtab = elf.get_section_by_name(".symtab")
    undefined = [s.name for s in symtab.iter_symbols() if s.name and s["st_shndx"] == "SHN_UNDEF"]
    assert undefined == []


def test_shipped_object_has_no_sse(tmp_path: Path) -> None:
    """relocate_kernel leaves CR4.OSFXSR clear: an SSE instruction would fault."""
    (tmp_path / "p.o").write_bytes(PURGATORY.shipped_object())
    listing = subprocess.run(
        ["objdump", "-d", tmp_path / "p.o"], capture_output=True, text=True, check=True
    ).stdout
    assert "%xmm" not in listing and "%ymm" not in listing and "%mm" not in listing


def test_patched_symbols_are_in_data_with_known_sizes() -> None:
    purgatory = load_x86_64_purgatory(LOW)
    for name, size in PATCHED_SYMBOLS.items():
        symbol = purgatory.symbols[name]
        assert (symbol.section, symbol.size, symbol.in_buffer) == (".data", size, True), name
        assert purgatory.read(name) == bytes(size)
    assert purgatory.symbols["purgatory_stack"].section == ".bss"
    assert purgatory.memsz > purgatory.bufsz


# --- SHA-256 compiled for the host ------------------------------------------


@dataclass(frozen=True)
class _HostSha:
    library: ctypes.CDLL

    def digest(self, data: bytes, pieces: Sequence[int] = ()) -> bytes:
        out = ctypes.create_string_buffer(32)
        piece_array = (ctypes.c_size_t * max(len(pieces), 1))(*pieces)
        self.library.harness_sha256(data, len(data), piece_array, len(pieces), out)
        return out.raw


@pytest.fixture(scope="module")
def host_sha(tmp_path_factory: pytest.TempPathFactory) -> _HostSha:
    tmp = tmp_path_factory.mktemp("sha")
    library = tmp / "libsha.so"
    _run(
        [
            "gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I", SOURCES,
            SOURCES / "sha256.c", C_SOURCES / "purgatory_sha256_harness.c", "-o", library,
        ]
    )  # fmt: skip
    lib = ctypes.CDLL(str(library))
    lib.harness_sha256.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_size_t,
        ctypes.c_char_p,
    ]
    lib.harness_sha256.restype = None
    return _HostSha(lib)


BOUNDARY_LENGTHS = [0, 1, 3, 54, 55, 56, 57, 63, 64, 65, 119, 120, 121, 127, 128, 129, 1000]


@pytest.mark.parametrize("length", BOUNDARY_LENGTHS)
def test_host_sha256_block_boundaries(host_sha: _HostSha, length: int) -> None:
    data = random.Random(length).randbytes(length)
    assert host_sha.digest(data) == hashlib.sha256(data).digest()
    assert host_sha.digest(data, [1]) == hashlib.sha256(data).digest()


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=700),
    pieces=st.lists(st.integers(min_value=1, max_value=130), max_size=8),
)
def test_host_sha256_matches_hashlib(host_sha: _HostSha, data: bytes, pieces: list[int]) -> None:
    """Pieces are like regions: one digest over several update() calls."""
    assert host_sha.digest(data, pieces) == hashlib.sha256(data).digest()


def test_host_sha256_large_input(host_sha: _HostSha) -> None:
    data = random.Random(7).randbytes(3 << 20)
    assert host_sha.digest(data, [1 << 20, 4095, 1]) == hashlib.sha256(data).digest()


# --- regions -------------------------------------------------------------------


def test_regions_digest_counts_memsz_as_zeros() -> None:
    segments = [(0x1000, b"abc", 0x1000), (0x5000, b"", 0x2000), (0x9000, b"x" * 4096, 4096)]
    expected = hashlib.sha256(b"abc" + bytes(0x1000 - 3) + bytes(0x2000) + b"x" * 4096)
    assert regions_digest(segments) == expected.digest()


def test_regions_table_layout() -> None:
    table = regions_table([(0x1000, b"abc", 0x1000), (0x123456789000, b"", 0x2000)])
    assert len(table) == 256
    assert struct.unpack_from("<4Q", table) == (0x1000, 0x1000, 0x123456789000, 0x2000)
    assert table[32:] == bytes(224)


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ([(0x1000 * i, b"", 0x1000) for i in range(17)], "table holds 16"),
        ([(0x1000, b"", 0)], "memsz must be positive"),
        ([(0x1000, b"abcd", 3)], "do not fit memsz"),
        ([(-1, b"", 1)], "outside the 64-bit"),
    ],
)
def test_regions_errors(segments: list[tuple[int, bytes, int]], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        regions_digest(segments)


# --- the loader: relocation correctness --------------------------------------


def _absolute_relocation_offsets(obj: bytes, purgatory: LoadedPurgatory) -> list[int]:
    """Buffer offsets of the R_X86_64_64 fields, found with pyelftools."""
    elf: Any = ELFFile(io.BytesIO(obj))
    section_offsets = _section_offsets(elf, purgatory)
    starts = []
    for section in elf.iter_sections():
        if section["sh_type"] != "SHT_RELA" or section["sh_info"] not in section_offsets:
            continue
        for relocation in section.iter_relocations():
            assert relocation["r_info_type"] in (1, 2, 4)  # 64, PC32, PLT32 only in this object
            if relocation["r_info_type"] == 1:
                starts.append(section_offsets[section["sh_info"]] + relocation["r_offset"])
    return starts


def _section_offsets(elf: Any, purgatory: LoadedPurgatory) -> dict[int, int]:
    """Where each loaded section starts in the buffer, from a global symbol in it."""
    offsets: dict[int, int] = {}
    for symbol in elf.get_section_by_name(".symtab").iter_symbols():
        if symbol.name in purgatory.symbols and isinstance(symbol["st_shndx"], int):
            address = purgatory.symbols[symbol.name].address
            offsets[symbol["st_shndx"]] = address - purgatory.load_address - symbol["st_value"]
    return offsets


def test_two_load_addresses_differ_only_at_absolute_relocations() -> None:
    obj = PURGATORY.shipped_object()
    low, high = load_purgatory(obj, LOW, RELOCATIONS), load_purgatory(obj, HIGH, RELOCATIONS)
    assert (low.bufsz, low.memsz) == (high.bufsz, high.memsz)
    differing = {i for i in range(low.bufsz) if low.buffer[i] != high.buffer[i]}
    starts = _absolute_relocation_offsets(obj, low)
    assert differing <= {offset for start in starts for offset in range(start, start + 8)}
    # Every absolute field moved by exactly the load-address difference.
    for start in starts:
        (low_value,) = struct.unpack_from("<Q", low.buffer, start)
        (high_value,) = struct.unpack_from("<Q", high.buffer, start)
        assert high_value - low_value == HIGH - LOW
    for name in low.symbols:
        assert high.symbols[name].address - low.symbols[name].address == HIGH - LOW


def test_relocated_values_by_hand() -> None:
    """Recompute a few relocations from the raw symbol and relocation tables."""
    obj = PURGATORY.shipped_object()
    purgatory = load_purgatory(obj, HIGH, RELOCATIONS)
    elf: Any = ELFFile(io.BytesIO(obj))
    offsets = _section_offsets(elf, purgatory)
    symtab = elf.get_section_by_name(".symtab")
    local = {s.name: s for s in symtab.iter_symbols() if s.name}

    def address_of(name: str) -> int:
        symbol = local[name]
        return HIGH + offsets[symbol["st_shndx"]] + int(symbol["st_value"])

    # The GDT pointer's base (after its 2-byte limit) is the GDT's absolute address.
    (base,) = struct.unpack_from("<Q", purgatory.buffer, address_of("gdt_pointer") - HIGH + 2)
    assert base == address_of("gdt")

    # Each PC-relative field in .text lands on its symbol: P + 4 + rel32 == S + A + 4.
    text = next(s for s in elf.iter_sections() if s.name == ".rela.text")
    calls_to_main = 0
    for relocation in text.iter_relocations():
        if relocation["r_info_type"] not in (2, 4):
            continue
        symbol = symtab.get_symbol(relocation["r_info_sym"])
        target = HIGH + offsets[symbol["st_shndx"]] + symbol["st_value"] + relocation["r_addend"]
        place = HIGH + offsets[text["sh_info"]] + relocation["r_offset"]
        (rel32,) = struct.unpack_from("<i", purgatory.buffer, place - HIGH)
        assert place + rel32 == target
        if symbol.name == "purgatory_main":
            # call rel32: the next instruction is at place + 4, the addend is -4.
            assert place + 4 + rel32 == purgatory.symbol("purgatory_main")[0]
            calls_to_main += 1
    assert calls_to_main == 1


def test_matches_gnu_ld(tmp_path: Path) -> None:
    """GNU ld, told to lay the sections out the same way, produces the same bytes."""
    (tmp_path / "p.o").write_bytes(PURGATORY.shipped_object())
    (tmp_path / "layout.ld").write_text(
        f"SECTIONS {{ . = {HIGH:#x}; .text : {{ *(.text) }} .rodata : {{ *(.rodata) }}\n"
        ".data : { *(.data) } .bss : { *(.bss) } /DISCARD/ : { *(.note.GNU-stack) } }\n"
    )
    _run(
        [
            "ld", "-m", "elf_x86_64", "-static", "-nostdlib", "--no-relax", "--build-id=none",
            "-e", "purgatory_start", "-T", "layout.ld", "p.o", "-o", "p.elf",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    _run(["objcopy", "-O", "binary", "p.elf", "p.bin"], cwd=tmp_path)
    purgatory = load_purgatory(PURGATORY.shipped_object(), HIGH, RELOCATIONS)
    assert (tmp_path / "p.bin").read_bytes() == purgatory.buffer
    linked: Any = ELFFile(io.BytesIO((tmp_path / "p.elf").read_bytes()))
    for symbol in linked.get_section_by_name(".symtab").iter_symbols():
        if symbol.name in purgatory.symbols:
            assert purgatory.symbol(symbol.name) == (symbol["st_value"], symbol["st_size"])
    bss = linked.get_section_by_name(".bss")
    assert purgatory.memsz == bss["sh_addr"] + bss["sh_size"] - HIGH


def test_loading_is_deterministic_and_patching_pure() -> None:
    first, second = load_x86_64_purgatory(LOW), load_x86_64_purgatory(LOW)
    assert first == second
    patched = first.patch("purgatory_sha256_digest", b"\xaa" * 32)
    assert first.read("purgatory_sha256_digest") == bytes(32)
    assert patched.read("purgatory_sha256_digest") == b"\xaa" * 32
    assert first.buffer != patched.buffer and len(first.buffer) == len(patched.buffer)
    with pytest.raises(TypeError):
        first.symbols["x"] = first.symbols["purgatory_start"]  # type: ignore[index]


# --- the loader: errors ---------------------------------------------------------


def test_patch_wrong_size() -> None:
    with pytest.raises(LayoutError, match=r"'purgatory_sha256_digest' is 32 bytes.* is 31"):
        load_x86_64_purgatory(LOW).patch("purgatory_sha256_digest", bytes(31))


def test_patch_bss_symbol() -> None:
    with pytest.raises(LayoutError, match=r"'purgatory_stack' is in \.bss"):
        load_x86_64_purgatory(LOW).patch("purgatory_stack", bytes(4096))


def test_unknown_symbol() -> None:
    purgatory = load_x86_64_purgatory(LOW)
    with pytest.raises(LayoutError, match="no global symbol 'nope'"):
        purgatory.patch("nope", b"")
    with pytest.raises(LayoutError, match="no global symbol 'gdt'"):  # local: not exported
        purgatory.symbol("gdt")


def test_bad_load_address() -> None:
    with pytest.raises(LayoutError, match="not aligned to 0x20"):
        load_x86_64_purgatory(LOW + 16)
    with pytest.raises(LayoutError, match="not a 64-bit address"):
        load_x86_64_purgatory(-32)
    with pytest.raises(LayoutError, match="pass the 64-bit limit"):
        load_x86_64_purgatory((1 << 64) - 0x1000)


def test_not_a_relocatable_object(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="not an ELF object"):
        load_purgatory(b"\x7fELF" + bytes(60), LOW, RELOCATIONS)
    executable = Path(shutil.which("true") or "/bin/true").read_bytes()
    with pytest.raises(LayoutError, match=r"expected a relocatable object \(ET_REL\), got ET_DYN"):
        load_purgatory(executable, LOW, RELOCATIONS)
    other_arch = RelocationRules(RELOCATIONS.machine + 1, RELOCATIONS.rules)
    with pytest.raises(LayoutError, match=r"built for e_machine 62, expected 63"):
        load_purgatory(PURGATORY.shipped_object(), LOW, other_arch)


OVERFLOW_SOURCE = """\
    .text
    .globl purgatory_start
purgatory_start:
    movq $target, %rax          /* R_X86_64_32S */
    leaq far(%rip), %rax        /* R_X86_64_PC32 against an absolute symbol */
    ret
    .data
    .globl target
target:
    .long target                /* R_X86_64_32 */
    .set far, 0x500000000000
"""


@pytest.mark.parametrize(
    ("load_address", "message"),
    [
        (0x8000_0000, r"R_X86_64_32S at \.text\+0x3 against 'target' overflows"),
        (0x1000, r"R_X86_64_PC32 at \.text\+0xa against 'far' overflows"),
        (0x1000, r"R_X86_64_PC32 at \.text\+0xa against '\(absolute\)' overflows"),
    ],
    ids=["32S", "PC32", "PC32 to a local absolute"],
)
def test_overflowing_32_bit_relocations(tmp_path: Path, load_address: int, message: str) -> None:
    source = OVERFLOW_SOURCE
    if "absolute" not in message:
        source += "    .globl far\n"  # a named symbol; a local one is folded into the addend
    obj = _compile_object(tmp_path, "overflow.S", source)
    with pytest.raises(LayoutError, match=message):
        load_purgatory(obj, load_address, RELOCATIONS)


def test_unsigned_32_bit_relocation(tmp_path: Path) -> None:
    source = OVERFLOW_SOURCE.replace("movq $target, %rax", "nop").replace("leaq far", "# ")
    obj = _compile_object(tmp_path, "unsigned.S", source)
    loaded = load_purgatory(obj, 0xFFFF_0000, RELOCATIONS)  # fits 32 bits unsigned, not signed
    assert struct.unpack("<I", loaded.buffer[-4:]) == (loaded.symbol("target")[0],)
    with pytest.raises(LayoutError, match=r"R_X86_64_32 at \.data\+0x0.*32 bits unsigned"):
        load_purgatory(obj, 0x1_0000_0000, RELOCATIONS)


def test_undefined_symbol(tmp_path: Path) -> None:
    source = "extern int elsewhere; int purgatory_start(void) { return elsewhere; }\n"
    obj = _compile_object(tmp_path, "undefined.c", source, "-fno-pic", "-mcmodel=large")
    with pytest.raises(LayoutError, match="undefined symbol 'elsewhere'"):
        load_purgatory(obj, LOW, RELOCATIONS)


def test_unsupported_relocation(tmp_path: Path) -> None:
    source = ".text\n.globl purgatory_start\npurgatory_start:\n.word purgatory_start\n"
    obj = _compile_object(tmp_path, "word.S", source)
    with pytest.raises(
        LayoutError,
        match=r"unsupported relocation type 12 at \.text\+0x0 against 'purgatory_start'",
    ):  # R_X86_64_16
        load_purgatory(obj, LOW, RELOCATIONS)


def test_missing_entry_symbol(tmp_path: Path) -> None:
    obj = _compile_object(tmp_path, "noentry.c", "int other(void) { return 1; }\n")
    with pytest.raises(LayoutError, match="entry symbol 'purgatory_start' is not defined"):
        load_purgatory(obj, LOW, RELOCATIONS)


# --- patching for a layout -----------------------------------------------------


def test_patch_x86_64_purgatory_fills_every_block() -> None:
    segments = [(0x7C000000, b"kernel", 0x2000000), (0x7F100000, bytes(4096), 4096)]
    backup = BackupRegion(src=0, dst=0x7E000000, size=640 << 10)
    ready = build_x86_64_purgatory(
        LOW, segments, kernel_entry=0x7C000200, boot_params=0x7F100000, backup=backup
    )
    assert ready.read("purgatory_sha256_digest") == regions_digest(segments)
    assert ready.read("purgatory_sha256_regions") == regions_table(segments)
    registers = dict(
        zip(ENTRY_REGISTERS, struct.unpack("<17Q", ready.read("purgatory_entry_regs")), strict=True)
    )
    stack, stack_size = ready.symbol("purgatory_stack")
    assert registers.pop("rip") == 0x7C000200
    assert registers.pop("rsi") == 0x7F100000
    assert registers.pop("rsp") == stack + stack_size
    assert set(registers.values()) == {0}
    assert ready.read("purgatory_backup") == struct.pack("<3Q", 0, 0x7E000000, 640 << 10)
    plain = build_x86_64_purgatory(LOW, segments, kernel_entry=0x7C000200, boot_params=0x7F100000)
    assert plain.read("purgatory_backup") == bytes(24)


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        (BackupRegion(0, 0x1000, 0), "backup size must be positive"),
        (BackupRegion(0, 0x1000, 0x2000), "overlap"),
    ],
)
def test_backup_errors(backup: BackupRegion, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        build_x86_64_purgatory(LOW, [], kernel_entry=0, boot_params=0, backup=backup)


def test_segment_overlapping_the_purgatory() -> None:
    with pytest.raises(LayoutError, match="segment 1 at 0x7f001000 overlaps the purgatory"):
        build_x86_64_purgatory(
            LOW, [(0, b"", 0x1000), (LOW + 0x1000, b"", 0x1000)], kernel_entry=0, boot_params=0
        )


def test_entry_registers_block_errors() -> None:
    with pytest.raises(LayoutError, match="unknown x86_64 registers"):
        entry_registers_block({"eip": 1})
    with pytest.raises(LayoutError, match="not a u64"):
        entry_registers_block({"rsi": 1 << 64})


# --- running the shipped code on the host ------------------------------------


@dataclass
class _HostPurgatory:
    """The shipped object relocated into executable memory of this process."""

    memory: mmap.mmap
    address: int
    purgatory: LoadedPurgatory

    def install(self, purgatory: LoadedPurgatory) -> None:
        self.memory[: purgatory.memsz] = purgatory.buffer + bytes(purgatory.memsz - purgatory.bufsz)
        self.purgatory = purgatory

    def call_main(self) -> int:
        function = ctypes.CFUNCTYPE(ctypes.c_int)(self.purgatory.symbol("purgatory_main")[0])
        return int(function())


@pytest.fixture
def host_purgatory() -> Iterator[_HostPurgatory]:
    prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
    memory = mmap.mmap(-1, 1 << 16, prot=prot)
    anchor = ctypes.c_char.from_buffer(memory)
    address = ctypes.addressof(anchor)
    del anchor  # the mmap cannot close while a ctypes view exists
    host = _HostPurgatory(memory, address, load_x86_64_purgatory(address))
    host.install(host.purgatory)
    yield host
    memory.close()


class _HostRegions:
    """Segments whose `start` is real memory of this process."""

    def __init__(self, contents: Sequence[tuple[bytes, int]]) -> None:
        self.buffers = [ctypes.create_string_buffer(data, memsz) for data, memsz in contents]
        self.segments = [
            (ctypes.addressof(buffer), data, memsz)
            for buffer, (data, memsz) in zip(self.buffers, contents, strict=True)
        ]


def _host_regions(rng: random.Random, count: int) -> _HostRegions:
    contents = []
    for _ in range(count):
        size = rng.choice([1, 55, 56, 64, 4096, rng.randrange(1, 70000)])
        contents.append((rng.randbytes(size), size + rng.choice([0, 1, 4096])))
    return _HostRegions(contents)


@pytest.mark.parametrize("count", [1, 2, 5, 16])
def test_shipped_purgatory_accepts_intact_segments(
    host_purgatory: _HostPurgatory, count: int
) -> None:
    regions = _host_regions(random.Random(count), count)
    host_purgatory.install(
        patch_x86_64_purgatory(
            host_purgatory.purgatory, regions.segments, kernel_entry=0, boot_params=0
        )
    )
    assert host_purgatory.call_main() == 1


@pytest.mark.parametrize("where", ["first byte", "last data byte", "zero tail", "last region"])
def test_shipped_purgatory_rejects_a_changed_byte(
    host_purgatory: _HostPurgatory, where: str
) -> None:
    regions = _HostRegions([(b"kernel" * 100, 4096), (b"initrd" * 999, 6000), (b"bp", 4096)])
    host_purgatory.install(
        patch_x86_64_purgatory(
            host_purgatory.purgatory, regions.segments, kernel_entry=0, boot_params=0
        )
    )
    assert host_purgatory.call_main() == 1
    buffer, offset = {
        "first byte": (regions.buffers[0], 0),
        "last data byte": (regions.buffers[1], 5993),
        "zero tail": (regions.buffers[0], 4095),
        "last region": (regions.buffers[2], 1),
    }[where]
    buffer[offset] = bytes([buffer[offset][0] ^ 1])
    assert host_purgatory.call_main() == 0


def test_shipped_purgatory_copies_backup_only_when_intact(host_purgatory: _HostPurgatory) -> None:
    regions = _HostRegions([(b"segment", 4096)])
    source = ctypes.create_string_buffer(random.Random(1).randbytes(10_000), 10_001)
    target = ctypes.create_string_buffer(10_002)
    backup = BackupRegion(ctypes.addressof(source), ctypes.addressof(target), 10_001)
    ready = patch_x86_64_purgatory(
        host_purgatory.purgatory, regions.segments, kernel_entry=0, boot_params=0, backup=backup
    )
    regions.buffers[0][0] = b"S"
    host_purgatory.install(ready)
    assert host_purgatory.call_main() == 0
    assert target.raw == bytes(10_002)  # a failed check copies nothing
    regions.buffers[0][0] = b"s"
    assert host_purgatory.call_main() == 1
    assert target.raw == source.raw + b"\0"  # exactly size bytes


@pytest.fixture(scope="module")
def register_catcher(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    tmp = tmp_path_factory.mktemp("regs")
    library = tmp / "libregs.so"
    _run(["gcc", "-shared", "-fPIC", C_SOURCES / "purgatory_regs_harness.S", "-o", library])
    return ctypes.CDLL(str(library))


def test_shipped_purgatory_hands_over_every_register(
    host_purgatory: _HostPurgatory, register_catcher: ctypes.CDLL
) -> None:
    capture = ctypes.cast(register_catcher.capture, ctypes.c_void_p).value
    assert capture is not None
    values = {name: (i + 1) << 56 | 0xDEAD << 32 | i for i, name in enumerate(ENTRY_REGISTERS)}
    values["rip"] = capture
    host_purgatory.install(
        host_purgatory.purgatory.patch("purgatory_entry_regs", entry_registers_block(values))
    )
    run_jump = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(("run_jump", register_catcher))
    run_jump(host_purgatory.purgatory.symbol("purgatory_enter_kernel")[0])
    captured = list((ctypes.c_uint64 * 16).in_dll(register_catcher, "captured"))
    assert dict(zip(ENTRY_REGISTERS[:16], captured, strict=True)) == {
        name: values[name] for name in ENTRY_REGISTERS[:16]
    }


# --- documentation examples ----------------------------------------------------


# --- running the shipped object on an emulated CPU (QEMU TCG) ----------------

QEMU_PURGATORY = 0x1000000
QEMU_KERNEL = 0x2000000  # stands for the kernel segment: only hashed here
QEMU_INITRD = 0x3000000
QEMU_BOOT_PARAMS = 0x4000000
QEMU_BACKUP = 0x5000000
LOW_640K = 640 << 10


@pytest.fixture(scope="module")
def qemu_stub(tmp_path_factory: pytest.TempPathFactory) -> purgatory_qemu.Stub:
    entry = load_x86_64_purgatory(QEMU_PURGATORY).entry
    return purgatory_qemu.build_stub(tmp_path_factory.mktemp("stub"), entry)


def _qemu_segments() -> list[tuple[int, bytes, int]]:
    rng = random.Random(64)
    return [
        (QEMU_KERNEL, rng.randbytes(70_001), 0x20000),  # memsz beyond the data: zeros
        (QEMU_INITRD, rng.randbytes(8192), 8192),
        (QEMU_BOOT_PARAMS, rng.randbytes(4096), 4096),
        (QEMU_BACKUP, b"", LOW_640K),  # the backup segment: hashed as zeros, filled after
    ]


def test_qemu_intact_segments_enter_the_kernel(
    tmp_path: Path, qemu_stub: purgatory_qemu.Stub
) -> None:
    segments = _qemu_segments()
    ready = build_x86_64_purgatory(
        QEMU_PURGATORY,
        segments,
        kernel_entry=qemu_stub.symbols["fake_kernel"],
        boot_params=QEMU_BOOT_PARAMS,
        backup=BackupRegion(src=0, dst=QEMU_BACKUP, size=LOW_640K),
    )
    halted = purgatory_qemu.run(
        tmp_path,
        qemu_stub,
        ready,
        {start: data for start, data, _memsz in segments if data},
        read_back=[(0, LOW_640K), (QEMU_BACKUP, LOW_640K)],
    )
    report = halted.reported()
    stack, stack_size = ready.symbol("purgatory_stack")
    gdt_base = report.pop("gdt_base")
    assert ready.load_address <= gdt_base < ready.load_address + ready.bufsz
    assert report.pop("rflags") & (1 << 9) == 0  # interrupts off
    assert report == {
        **dict.fromkeys(ENTRY_REGISTERS[:16], 0),
        "rsi": QEMU_BOOT_PARAMS,
        "rsp": stack + stack_size,
        "cs": 0x10,  # the 64-bit boot protocol's __BOOT_CS and __BOOT_DS
        "ds": 0x18,
        "es": 0x18,
        "ss": 0x18,
        "gdt_limit": 4 * 8 - 1,
    }
    low_memory, backup = halted.memory[0], halted.memory[QEMU_BACKUP]
    assert backup == low_memory and backup != bytes(LOW_640K)


@pytest.mark.parametrize("where", ["kernel data", "kernel zero tail", "backup segment"])
def test_qemu_changed_segment_halts_in_purgatory(
    tmp_path: Path, qemu_stub: purgatory_qemu.Stub, where: str
) -> None:
    segments = _qemu_segments()
    ready = build_x86_64_purgatory(
        QEMU_PURGATORY,
        segments,
        kernel_entry=qemu_stub.symbols["fake_kernel"],
        boot_params=QEMU_BOOT_PARAMS,
        backup=BackupRegion(src=0, dst=QEMU_BACKUP, size=LOW_640K),
    )
    blobs = {start: data for start, data, _memsz in segments if data}
    if where == "kernel data":
        kernel = bytearray(blobs[QEMU_KERNEL])
        kernel[12345] ^= 1
        blobs[QEMU_KERNEL] = bytes(kernel)
    elif where == "kernel zero tail":
        blobs[QEMU_KERNEL + 0x20000 - 1] = b"\x01"  # past the data, inside memsz
    else:
        blobs[QEMU_BACKUP + LOW_640K - 1] = b"\x80"  # the last byte, not read back below
    halted = purgatory_qemu.run(
        tmp_path, qemu_stub, ready, blobs, read_back=[(QEMU_BACKUP, LOW_640K - 1)]
    )
    halt, halt_size = ready.symbol("purgatory_halt")
    assert halt <= halted.rip < halt + halt_size
    assert halted.console == ""  # the capture side never ran
    assert halted.memory[QEMU_BACKUP] == bytes(LOW_640K - 1)  # no backup copy either
