"""vmlinux: a 64-bit ELF kernel, read through the one ELF reader (`builder.binfmt.elf`).

A loader places its PT_LOAD segments; whether it may move them depends on
ET_DYN or a dynamic section the kernel applies itself.
"""

from __future__ import annotations

from builder.arch import ARCHES, Arch, by_elf_machine
from builder.binfmt.elf import (
    ELF_MAGIC,
    ET_DYN,
    ET_EXEC,
    PT_DYNAMIC,
    PT_LOAD,
    SHT_DYNAMIC,
    ElfFile,
)
from builder.binfmt.kernelimg.base import KernelFormat, find_banner, is_power_of_two
from builder.binfmt.kernelimg.model import (
    ElfHeader,
    ImageFormat,
    KernelImage,
    LoadSegment,
    Placement,
)
from builder.compression import Compression
from builder.errors import ImageError

# Where the fields a message names sit in an ELF64 header and program header.
EI_CLASS = 4
E_TYPE = 16
E_MACHINE = 18
E_PHNUM = 56
P_MEMSZ = 40
ADDRESS_LIMIT = 1 << 64


class ElfFormat(KernelFormat):
    """vmlinux: a 64-bit ELF kernel of any architecture with a 64-bit `ArchInfo`.

    >>> from builder.binfmt.elf import _tiny_elf
    >>> ElfFormat.parse(_tiny_elf(), "vmlinux")
    Traceback (most recent call last):
    ...
    builder.errors.ImageError: vmlinux: byte 0x38: expected at least one PT_LOAD program header
    """

    format = ImageFormat.VMLINUX

    @classmethod
    def matches(cls, data: bytes) -> bool:
        return data[:4] == ELF_MAGIC

    @classmethod
    def parse(cls, data: bytes, name: str) -> KernelImage:
        elf = ElfFile(data, name, ImageError)
        arch = _kernel_arch(elf)
        segments = _load_segments(elf)
        dynamic = bool(elf.segments(PT_DYNAMIC)) or any(
            section.type == SHT_DYNAMIC for section in elf.sections
        )
        header = ElfHeader(
            machine=elf.machine,
            elf_type=elf.type_name,
            big_endian=elf.big_endian,
            entry=elf.entry,
            segments=segments,
            dynamic=dynamic,
        )
        # ppc64 links its relocatable vmlinux as ET_EXEC with a .dynamic section
        # that its early boot code applies, so the section counts as much as ET_DYN.
        relocatable = elf.type == ET_DYN or dynamic
        return _placement(data, name, arch, header, relocatable)


def _kernel_arch(elf: ElfFile) -> Arch:
    """The architecture of an ELF64 executable kernel, from e_machine and byte order."""
    if elf.elf_class != 64:
        elf.fail(EI_CLASS, f"expected ELFCLASS64 (a 64-bit kernel), found class {elf.elf_class}")
    if elf.type not in (ET_EXEC, ET_DYN):
        elf.fail(E_TYPE, f"expected e_type ET_EXEC or ET_DYN, found {elf.type}")
    info = by_elf_machine(elf.machine, big_endian=elf.big_endian)
    if info is None or info.elf_class != 64:
        known = ", ".join(info.arch for info in ARCHES.values() if info.elf_class == 64)
        elf.fail(
            E_MACHINE, f"expected a kernel machine type ({known}), found e_machine {elf.machine}"
        )
    return info.arch


def _load_segments(elf: ElfFile) -> tuple[LoadSegment, ...]:
    """The PT_LOAD segments, each inside 64-bit memory and inside the file."""
    segments = []
    for header in elf.segments(PT_LOAD):
        if header.memsz < header.filesz:
            elf.fail(
                header.at + P_MEMSZ,
                f"expected p_memsz >= p_filesz in program header {header.index}",
            )
        if max(header.paddr, header.vaddr) + header.memsz > ADDRESS_LIMIT:
            elf.fail(
                header.at + P_MEMSZ,
                f"expected program header {header.index} inside 64-bit memory",
            )
        elf.reader.need(header.offset, header.filesz, f"contents of PT_LOAD {header.index}")
        segments.append(
            LoadSegment(
                header.offset, header.vaddr, header.paddr, header.filesz, header.memsz, header.align
            )
        )
    if not segments:
        elf.fail(E_PHNUM, "expected at least one PT_LOAD program header")
    return tuple(segments)


def _placement(
    data: bytes, name: str, arch: Arch, header: ElfHeader, relocatable: bool
) -> KernelImage:
    """Where the segments must go: at their physical addresses, or anywhere if relocatable."""
    segments = header.segments
    # A fixed image runs at its physical addresses; a relocatable one keeps
    # the distances between its virtual ones.
    starts = [s.vaddr if relocatable else s.paddr for s in segments]
    ends = [start + s.memory_size for start, s in zip(starts, segments, strict=True)]
    alignment = max(s.align for s in segments)
    if not is_power_of_two(alignment):
        alignment = ARCHES[arch].image_alignment
    version, banner = find_banner(data)
    return KernelImage(
        name=name,
        format=ImageFormat.VMLINUX,
        arch=arch,
        version=version,
        banner=banner,
        placement=Placement(
            relocatable=relocatable,
            alignment=alignment,
            min_address=0 if relocatable else min(starts),
            max_address=None,
            fixed_address=None if relocatable else min(starts),
            memory_size=max(ends) - min(starts),
            load_offset=0,
            entry=header.entry,
            entry_is_address=True,
        ),
        compression=Compression.NONE,
        file_size=len(data),
        decompressed_size=None,
        header=header,
        loadable=data,
    )
