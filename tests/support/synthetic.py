"""Synthetic kernel images for tests, built from the documented layouts.

Offsets are written out here from the kernel's documentation (boot.rst,
booting.rst, boot-image-header.rst, zboot-header.S, the PE/COFF and ELF
specifications) rather than taken from `builder.binfmt.kernelimg`, so a wrong
constant there cannot make a test agree with itself.
"""

from __future__ import annotations

import gzip
import lzma
import struct

import zstandard

BANNER = (
    b"Linux version 6.9.0-synth (builder@example.org) (gcc 13.2.0, GNU ld 2.42) "
    b"#1 SMP PREEMPT_DYNAMIC Mon Jan  1 00:00:00 UTC 2024\n\x00"
)


def _put(buffer: bytearray, offset: int, fmt: str, *values: object) -> None:
    struct.pack_into(fmt, buffer, offset, *values)


def bzimage(
    *,
    protocol: int = 0x020F,
    setup_sects: int = 4,
    relocatable: bool = True,
    kernel_alignment: int = 0x200000,
    min_alignment_log2: int = 21,
    pref_address: int = 0x1000000,
    init_size: int = 0x2000000,
    xloadflags: int = 0x3,
    version: bytes = b"6.9.0-synth (builder@example.org) #1 SMP",
    payload: bytes = b"\xfd7zXZ\x00" + bytes(2000),
) -> bytes:
    """An x86 bzImage: setup sectors with the setup header, then protected-mode code."""
    setup = bytearray(((setup_sects or 4) + 1) * 512)
    _put(setup, 0x1F1, "<B", setup_sects)
    _put(setup, 0x1FE, "<H", 0xAA55)
    setup[0x202:0x206] = b"HdrS"
    _put(setup, 0x206, "<H", protocol)
    version_at = 0x400  # inside the setup sectors, after the header
    setup[version_at : version_at + len(version) + 1] = version + b"\x00"
    _put(setup, 0x20E, "<H", version_at - 0x200)
    _put(setup, 0x211, "<B", 0x01)  # LOADED_HIGH
    _put(setup, 0x214, "<I", 0x100000)
    _put(setup, 0x230, "<I", kernel_alignment)
    _put(setup, 0x234, "<B", int(relocatable))
    _put(setup, 0x235, "<B", min_alignment_log2)
    _put(setup, 0x236, "<H", xloadflags)
    _put(setup, 0x238, "<I", 2047)
    payload_offset = 0x100
    _put(setup, 0x248, "<I", payload_offset)
    _put(setup, 0x24C, "<I", len(payload))
    _put(setup, 0x258, "<Q", pref_address)
    _put(setup, 0x260, "<I", init_size)
    kernel_length = -(-(payload_offset + len(payload) + 64) // 16) * 16
    kernel = bytearray(kernel_length)
    kernel[payload_offset : payload_offset + len(payload)] = payload
    _put(setup, 0x1F4, "<I", kernel_length // 16)  # syssize in paragraphs
    return bytes(setup + kernel)


def arm64_image(
    *,
    text_offset: int = 0,
    image_size: int = 0x20000,
    flags: int = 0b1010,  # little endian, 4K pages, placement anywhere
    efi_stub: bool = False,
    body: bytes = BANNER,
) -> bytes:
    """An arm64 Image (booting.rst): 64-byte header, optional PE header, body."""
    header = bytearray(64)
    header[0:4] = b"MZ\x40\xfa" if efi_stub else b"\x00\x00\x00\x14"
    _put(header, 8, "<QQQ", text_offset, image_size, flags)
    header[56:60] = b"ARM\x64"
    pe = b""
    if efi_stub:
        _put(header, 60, "<I", 64)
        pe = b"PE\x00\x00" + struct.pack("<HHIIIHH", 0xAA64, 0, 0, 0, 0, 0, 0x206)
    return bytes(header) + pe + bytes(0x100) + body + bytes(0x200)


def riscv_image(
    *, text_offset: int = 0, image_size: int = 0x40000, version: int = 0x0002, flags: int = 0
) -> bytes:
    """A RISC-V Image (boot-image-header.rst), header version 0.2."""
    header = bytearray(64)
    header[0:4] = b"\x6f\x00\x00\x00"
    _put(header, 8, "<QQQ", text_offset, image_size, flags)
    _put(header, 32, "<I", version)
    header[48:56] = b"RISCV\x00\x00\x00"
    header[56:60] = b"RSC\x05"
    return bytes(header) + bytes(0x80) + BANNER + bytes(0x100)


def elf64(
    *,
    machine: int,
    big_endian: bool = False,
    elf_type: int = 2,
    entry: int = 0x1000000,
    segments: tuple[tuple[int, int, int, int, int], ...] = (
        (0xFFFF0000, 0x1000000, 0x200, 0x4000, 0x200000),
    ),
    dynamic_section: bool = False,
) -> bytes:
    """An ELF64 with PT_LOAD segments given as (vaddr, paddr, filesz, memsz, align).

    With `dynamic_section`, section headers follow: null, .dynamic, .shstrtab,
    as a self-relocating ppc64 vmlinux has them.
    """
    order = ">" if big_endian else "<"
    phoff = 64
    data_at = phoff + 56 * len(segments)
    phdrs = b""
    offset = data_at
    for vaddr, paddr, filesz, memsz, align in segments:
        phdrs += struct.pack(order + "IIQQQQQQ", 1, 5, offset, vaddr, paddr, filesz, memsz, align)
        offset += filesz
    body = bytearray(offset - data_at)
    body[: len(BANNER)] = BANNER[: len(body)]
    shoff = shnum = shstrndx = 0
    sections = b""
    if dynamic_section:
        names = b"\x00.dynamic\x00.shstrtab\x00"
        names_at = offset
        shoff = -(-(names_at + len(names)) // 8) * 8
        shnum, shstrndx = 3, 2
        sections = names + bytes(shoff - names_at - len(names)) + bytes(64)
        # name, type, flags, addr, offset, size, link, info, addralign, entsize
        sections += struct.pack(order + "IIQQQQIIQQ", 1, 6, 3, 0, data_at, 0, 2, 0, 8, 16)
        sections += struct.pack(order + "IIQQQQIIQQ", 10, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    header = bytearray(64)
    header[0:4] = b"\x7fELF"
    header[4:7] = bytes([2, 2 if big_endian else 1, 1])
    struct.pack_into(
        order + "HHIQQQIHHHHHH", header, 16,
        elf_type, machine, 1, entry, phoff, shoff, 0, 64, 56, len(segments), 64, shnum, shstrndx,
    )  # fmt: skip
    return bytes(header) + phdrs + bytes(body) + sections


def compress(kind: str, data: bytes) -> bytes:
    """Compress as the kernel's Makefiles do for Image.gz / .zst / .xz / .lzma."""
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor(level=19).compress(data)
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    if kind == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    raise ValueError(kind)


# zboot-header.S compression names, and the stream each one is.
ZBOOT_NAMES = {"gzip": "gzip", "zstd22": "zstd", "xzkern": "xz", "lzma": "lzma"}


def zboot(inner: bytes, compression: str = "gzip", *, machine: int = 0xAA64) -> bytes:
    """An EFI zboot image (zboot-header.S) carrying `inner` compressed."""
    payload = compress(ZBOOT_NAMES[compression], inner)
    header = bytearray(0x200)
    header[0:4] = b"MZ\x00\x00"
    header[4:8] = b"zimg"
    _put(header, 8, "<II", 0x200, len(payload))
    name = compression.encode()
    header[24 : 24 + len(name)] = name
    header[0x38:0x3C] = b"\xcd\x23\x82\x81"  # LINUX_PE_MAGIC
    _put(header, 0x3C, "<I", 0x40)
    header[0x40:0x44] = b"PE\x00\x00"
    _put(header, 0x44, "<HHIIIHH", machine, 0, 0, 0, 0, 0, 0x206)
    # Except for gzip, the build appends the uncompressed size, outside payload_size.
    trailer = b"" if compression == "gzip" else struct.pack("<I", len(inner))
    return bytes(header) + payload + trailer


def pe_image(sections: list[tuple[str, bytes]], *, machine: int = 0x8664) -> bytes:
    """A minimal PE32+ EFI application with the given sections (e.g. a UKI)."""
    file_align, section_align = 0x200, 0x1000
    count = len(sections)
    headers_size = -(-(0x40 + 4 + 20 + 240 + 40 * count) // file_align) * file_align
    table = b""
    raw = b""
    va = section_align
    for name, content in sections:
        raw_size = -(-len(content) // file_align) * file_align
        table += struct.pack(
            "<8sIIIIIIHHI", name.encode(), len(content), va, raw_size,
            headers_size + len(raw), 0, 0, 0, 0, 0x40000040,
        )  # fmt: skip
        raw += content + bytes(raw_size - len(content))
        va += -(-max(len(content), 1) // section_align) * section_align
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    _put(dos, 0x3C, "<I", 0x40)
    coff = struct.pack("<HHIIIHH", machine, count, 0, 0, 0, 240, 0x0206)
    optional = bytearray(240)
    _put(optional, 0, "<H", 0x20B)  # PE32+
    _put(optional, 32, "<II", section_align, file_align)
    _put(optional, 56, "<II", va, headers_size)  # SizeOfImage, SizeOfHeaders
    _put(optional, 68, "<H", 10)  # EFI application
    _put(optional, 108, "<I", 16)
    head = bytes(dos) + b"PE\x00\x00" + coff + bytes(optional) + table
    return head + bytes(headers_size - len(head)) + raw


def uki(kernel: bytes, *, machine: int = 0x8664, initrd: bytes = b"\x07" * 3000) -> bytes:
    """A unified kernel image: stub text plus .uname, .cmdline, .linux and .initrd."""
    return pe_image(
        [
            (".text", b"\xc3" * 64),
            (".osrel", b'ID=debian\nPRETTY_NAME="Synthetic"\n'),
            (".cmdline", b"console=ttyS0 quiet\x00"),
            (".uname", b"6.9.0-synth"),
            (".linux", kernel),
            (".initrd", initrd),
        ],
        machine=machine,
    )
