"""Kernel image parsing, checked against real Debian kernels and synthetic images.

Expected values come from an independent route: the kernel's documented
offsets unpacked with struct here, `file`, `readelf`, `objdump`, the package
name, or the parameters a synthetic image was built with.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from builder.arch import Arch
from builder.binfmt.kernelimg import (
    FORMATS,
    ImageFormat,
    KernelImage,
    describe,
    parse_kernel_image,
)
from builder.compression import Compression
from builder.errors import ImageError
from builder.image.fetch import fetch_packages
from tests.support.kernels import deb_members, debian_kernel
from tests.support.synthetic import (
    arm64_image,
    bzimage,
    compress,
    elf64,
    pe_image,
    riscv_image,
    uki,
    zboot,
)

SYNTH_VERSION = "6.9.0-synth"
MiB = 1 << 20


def run(*command: str, data: bytes | None = None) -> str:
    return subprocess.run(command, input=data, capture_output=True, check=True).stdout.decode()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def package_version(package: str) -> str:
    """`uname -r` as Debian's package name spells it: linux-image-<uname -r>."""
    return package.removeprefix("linux-image-")


def assert_json_ready(summary: dict[str, object]) -> None:
    for key in ("arch", "format", "version", "banner", "relocatable", "alignment"):
        assert key in summary
    for key in ("min_address", "memory_size", "entry"):
        assert key in summary
    assert json.loads(json.dumps(summary)) == summary


# ---------------------------------------------------------------------------
# Real Debian kernels


def test_debian_amd64_bzimage_matches_documented_header_offsets() -> None:
    kernel = debian_kernel("x86_64")
    data = kernel.image
    image = parse_kernel_image(data, kernel.path)

    def u(offset: int, fmt: str) -> int:
        return int(struct.unpack_from("<" + fmt, data, offset)[0])

    setup_sects = data[0x1F1]
    assert data[0x202:0x206] == b"HdrS"
    header = image.bzimage
    assert header is not None
    assert image.format is ImageFormat.BZIMAGE
    assert image.arch is Arch.X86_64
    assert header.setup_sects == setup_sects
    assert header.kernel_offset == ((setup_sects or 4) + 1) * 512
    assert header.kernel_size == len(data) - header.kernel_offset
    assert header.protocol == u(0x206, "H")
    assert header.protocol >= 0x020F  # Debian 12's 6.1 kernels use protocol 2.15
    assert header.relocatable_kernel is (data[0x234] == 1)
    assert header.kernel_alignment == u(0x230, "I")
    assert header.min_alignment == 1 << data[0x235]
    assert header.pref_address == u(0x258, "Q")
    assert header.init_size == u(0x260, "I")
    assert header.xloadflags == u(0x236, "H")
    assert header.cmdline_size == u(0x238, "I")
    assert header.payload_offset == u(0x248, "I")
    assert header.payload_length == u(0x24C, "I")
    assert header.handover_offset == u(0x264, "I")
    # The payload really is a compressed stream where the header says.
    payload = data[header.kernel_offset + u(0x248, "I") :]
    assert payload[:6] in (b"\xfd7zXZ\x00",) or payload[:2] == b"\x1f\x8b"

    # FACTS.md: Debian amd64 is relocatable, 2 MiB aligned, pref_address 16 MiB.
    assert image.placement.relocatable
    assert image.placement.alignment == u(0x230, "I") == 2 * MiB
    assert image.placement.min_address == u(0x258, "Q") == 16 * MiB
    assert image.placement.memory_size == u(0x260, "I")
    assert image.placement.entry == 0x200 and not image.placement.entry_is_address
    assert image.placement.fixed_address is None
    assert image.placement.max_address is None  # xloadflags bit 1: loadable above 4 GiB

    # `file` reads the kernel_version string by its own rules.
    file_says = run("file", "-b", "-", data=data[:0x10000])
    match = re.search(r"version (.+?), (RO-rootFS|swap_dev|Normal|root_dev)", file_says)
    assert match, file_says
    assert image.banner == match.group(1)
    assert image.version == package_version(kernel.package)

    summary = describe(image)
    assert_json_ready(summary)
    assert summary["arch"] == "x86_64" and summary["format"] == "bzImage"
    assert summary["memory_size"] == u(0x260, "I")
    assert summary["relocatable"] is True


def test_debian_arm64_image_matches_documented_header_offsets() -> None:
    kernel = debian_kernel("aarch64")
    data = kernel.image
    image = parse_kernel_image(data, kernel.path)
    text_offset, image_size, flags = struct.unpack_from("<QQQ", data, 8)
    assert data[56:60] == b"ARM\x64"
    header = image.boot_header
    assert header is not None
    assert image.format is ImageFormat.IMAGE and image.arch is Arch.AARCH64
    assert image.compression is Compression.NONE
    assert (header.text_offset, header.image_size, header.flags) == (text_offset, image_size, flags)
    assert image.placement.memory_size == image_size
    assert image.placement.load_offset == text_offset
    assert image.placement.relocatable is bool(flags & 8)
    assert image.placement.relocatable  # Debian's arm64 kernel may be placed anywhere
    assert image.placement.alignment == 2 * MiB
    # Debian ships the EFI-stub form: "MZ" and a PE header where offset 60 says.
    assert data[:2] == b"MZ" and header.efi_stub
    pe_offset = struct.unpack_from("<I", data, 60)[0]
    assert data[pe_offset : pe_offset + 4] == b"PE\x00\x00"

    file_says = run("file", "-b", "-", data=data[:0x10000])
    assert "ARM64 boot executable Image" in file_says
    assert "little-endian" in file_says and not header.big_endian
    page = re.search(r"(\d+)K pages", file_says)
    assert page and header.page_size == int(page.group(1)) * 1024

    assert image.version == package_version(kernel.package)
    assert image.banner is not None
    assert image.banner.startswith(f"Linux version {image.version} (")
    assert image.banner.encode() in data
    assert re.search(r" #\d+ ", image.banner)  # the real banner, not the weak placeholder
    assert_json_ready(describe(image))


def _readelf(path: Path) -> tuple[str, int, str, list[tuple[int, int, int, int]]]:
    """(type, entry, machine, [(vaddr, paddr, filesz, memsz)]) as readelf prints them."""
    text = run("readelf", "-h", "-l", "-W", str(path))
    elf_type = re.search(r"Type:\s+(\S+)", text)
    entry = re.search(r"Entry point address:\s+(0x[0-9a-f]+)", text)
    machine = re.search(r"Machine:\s+(.+)", text)
    assert elf_type and entry and machine, text
    loads = [
        tuple(int(v, 16) for v in m.groups())
        for m in re.finditer(
            r"^\s+LOAD\s+0x[0-9a-f]+ (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+)",
            text,
            re.MULTILINE,
        )
    ]
    return elf_type.group(1), int(entry.group(1), 16), machine.group(1).strip(), loads  # type: ignore[return-value]


def _check_against_readelf(image: KernelImage, path: Path) -> None:
    elf_type, entry, _machine, loads = _readelf(path)
    sections = run("readelf", "-S", "-W", str(path))
    dynamic = re.search(r"^\s*\[\s*\d+\]\s+\S*\s+DYNAMIC\s", sections, re.MULTILINE) is not None
    assert image.elf is not None
    assert image.elf.elf_type == "ET_" + elf_type
    assert image.elf.dynamic is dynamic
    assert image.placement.entry == entry and image.placement.entry_is_address
    ours = [(s.vaddr, s.paddr, s.file_size, s.memory_size) for s in image.elf.segments]
    assert ours == loads
    # ET_DYN, or a .dynamic section the kernel applies itself: runs anywhere.
    use_vaddr = elf_type == "DYN" or dynamic
    starts = [load[0] if use_vaddr else load[1] for load in loads]
    span = max(start + load[3] for start, load in zip(starts, loads, strict=True)) - min(starts)
    assert image.placement.memory_size == span
    assert image.placement.relocatable is use_vaddr


def test_debian_ppc64le_vmlinux_matches_readelf(tmp_path: Path) -> None:
    kernel = debian_kernel("ppc64le")
    path = write(tmp_path, "vmlinux", kernel.image)
    image = parse_kernel_image(kernel.image, kernel.path)
    assert kernel.path.startswith("/boot/vmlinux-")
    assert image.format is ImageFormat.VMLINUX
    assert image.arch is Arch.PPC64LE
    assert image.placement.relocatable  # CONFIG_RELOCATABLE=y: a .dynamic section it applies itself
    assert "CONFIG_RELOCATABLE=y" in kernel.config.splitlines()
    _elf_type, _entry, machine, _loads = _readelf(path)
    assert "PowerPC64" in machine
    _check_against_readelf(image, path)
    assert image.version == package_version(kernel.package)
    assert_json_ready(describe(image))


@pytest.mark.parametrize("fraction", [0.00001, 0.001, 0.5, 0.9999])
def test_debian_arm64_image_cut_short_is_refused(fraction: float) -> None:
    """An Image cannot tell it was truncated; the EFI stub's section table can."""
    data = debian_kernel("aarch64").image
    with pytest.raises(ImageError, match=r"^cut: truncated at byte 0x[0-9a-f]+: expected "):
        parse_kernel_image(data[: int(len(data) * fraction)], "cut")


@pytest.mark.parametrize("tool", [("gzip", "-1", "-n", "-c"), ("zstd", "-3", "-q", "-c")])
def test_debian_arm64_image_compressed_by_the_real_tools(tool: tuple[str, ...]) -> None:
    kernel = debian_kernel("aarch64")
    packed = subprocess.run(tool, input=kernel.image, capture_output=True, check=True).stdout
    image = parse_kernel_image(packed, "Image.packed")
    plain = parse_kernel_image(kernel.image, "Image")
    assert image.compression == {"gzip": "gzip", "zstd": "zstd"}[tool[0]]
    assert image.decompressed_size == len(kernel.image)
    assert image.file_size == len(packed)
    assert image.loadable == kernel.image
    assert image.boot_header == plain.boot_header
    assert image.version == plain.version


def test_uki_built_with_objcopy_from_debian_stub_and_kernel(tmp_path: Path) -> None:
    """The pre-ukify recipe: objcopy --add-section onto systemd's EFI stub."""
    kernel = debian_kernel("x86_64")
    (stub_package,) = fetch_packages(["systemd-boot-efi"], "x86_64")
    stubs = deb_members(str(stub_package.path), ("*/linuxx64.efi.stub",))
    (stub,) = stubs.values()
    parts = {
        ".uname": (b"6.1.0-test-uname", 0x20000),
        ".cmdline": (b"console=ttyS0 crashkernel=256M", 0x30000),
        ".linux": (kernel.image, 0x2000000),
        ".initrd": (b"\x30" * 5000, 0x3000000),
    }
    command = ["objcopy"]
    for section, (content, vma) in parts.items():
        file = write(tmp_path, section.strip("."), content)
        command += [
            "--add-section",
            f"{section}={file}",
            "--change-section-vma",
            f"{section}={vma:#x}",
        ]
    out = tmp_path / "uki.efi"
    subprocess.run([*command, str(write(tmp_path, "stub", stub)), str(out)], check=True)

    data = out.read_bytes()
    image = parse_kernel_image(data, "uki.efi")
    objdump = run("objdump", "-h", str(out))
    row = re.search(r"\.linux\s+([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", objdump)
    assert row, objdump
    assert image.format is ImageFormat.UKI and image.uki is not None
    assert image.uki.kernel_offset == int(row.group(2), 16)
    assert image.uki.kernel_size == int(row.group(1), 16) == len(kernel.image)
    assert image.uki.cmdline == "console=ttyS0 crashkernel=256M"
    assert image.uki.uname == "6.1.0-test-uname"
    assert image.uki.initrd_size == 5000
    assert image.inner is not None and image.inner.format is ImageFormat.BZIMAGE
    bare = parse_kernel_image(kernel.image, kernel.path)
    assert image.inner.bzimage == bare.bzimage
    assert (image.arch, image.version, image.placement.memory_size) == (
        bare.arch,
        bare.version,
        bare.placement.memory_size,
    )
    assert image.kernel.loadable == kernel.image
    summary = describe(image)
    assert_json_ready(summary)
    assert summary["format"] == "uki"
    assert isinstance(summary["inner"], dict) and summary["inner"]["format"] == "bzImage"


# ---------------------------------------------------------------------------
# Synthetic x86 bzImage


def test_non_relocatable_bzimage_runs_at_pref_address() -> None:
    data = bzimage(relocatable=False, pref_address=0x1000000, init_size=0x1800000)
    image = parse_kernel_image(data, "fixed.bzImage")
    assert not image.placement.relocatable
    assert image.placement.fixed_address == 0x1000000
    assert image.placement.min_address == 0x1000000
    assert image.placement.memory_size == 0x1800000
    assert image.version == SYNTH_VERSION
    assert image.banner == "6.9.0-synth (builder@example.org) #1 SMP"
    assert image.bzimage is not None and image.bzimage.protocol_version == "2.15"
    assert image.placement.max_address is None  # xloadflags bit 1 set


def test_bzimage_setup_sects_zero_means_four() -> None:
    image = parse_kernel_image(bzimage(setup_sects=0), "old.bzImage")
    assert image.bzimage is not None
    assert image.bzimage.kernel_offset == 5 * 512


def test_bzimage_protocol_206_has_no_init_size_and_is_32_bit() -> None:
    image = parse_kernel_image(bzimage(protocol=0x0206, xloadflags=0), "2.06")
    assert image.bzimage is not None
    assert image.bzimage.init_size is None and image.placement.memory_size is None
    assert image.bzimage.pref_address is None and image.bzimage.min_alignment is None
    assert image.bzimage.payload_offset is None
    assert image.arch is Arch.I386
    assert image.placement.min_address == 0x100000
    assert image.placement.max_address == 4 << 30
    assert image.placement.entry == 0


def test_bzimage_below_4g_when_xloadflags_says_so() -> None:
    image = parse_kernel_image(bzimage(xloadflags=0x1), "low")
    assert image.arch is Arch.X86_64 and image.placement.max_address == 4 << 30


def test_bzimage_protocol_205_is_refused() -> None:
    with pytest.raises(ImageError, match=r"old: byte 0x206: expected boot protocol 2.06"):
        parse_kernel_image(bzimage(protocol=0x0205), "old")


def test_truncated_bzimage_names_offset() -> None:
    data = bzimage()
    with pytest.raises(ImageError, match=r"cut: truncated at byte 0xa00: expected protected-mode"):
        parse_kernel_image(data[:-100], "cut")


def test_bzimage_bad_alignment_is_corrupt() -> None:
    with pytest.raises(ImageError, match=r"byte 0x230: expected a power-of-two kernel_alignment"):
        parse_kernel_image(bzimage(kernel_alignment=0x300000), "odd")


# ---------------------------------------------------------------------------
# Synthetic arm64 / RISC-V Image and zboot


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "lzma"])
def test_compressed_arm64_image(kind: str) -> None:
    raw = arm64_image(text_offset=0x80000, image_size=0x123000)
    image = parse_kernel_image(compress(kind, raw), f"Image.{kind}")
    assert image.format is ImageFormat.IMAGE and image.arch is Arch.AARCH64
    assert image.compression == kind
    assert image.decompressed_size == len(raw)
    assert image.loadable == raw
    assert image.placement.memory_size == 0x123000 and image.placement.load_offset == 0x80000
    assert image.version == SYNTH_VERSION
    assert image.name == f"Image.{kind}"


def test_compressed_image_with_cli_xz_kernel_settings(tmp_path: Path) -> None:
    """xz as scripts/xz_wrap.sh runs it (crc32 check, arm64 BCJ filter)."""
    raw = arm64_image()
    packed = subprocess.run(
        ["xz", "--check=crc32", "--arm64", "--lzma2=dict=32MiB", "-c"],
        input=raw, capture_output=True, check=True,
    ).stdout  # fmt: skip
    image = parse_kernel_image(packed, "Image.xz")
    assert image.compression is Compression.XZ and image.loadable == raw


def test_truncated_compressed_image_is_an_image_error() -> None:
    packed = compress("gzip", arm64_image())
    with pytest.raises(ImageError, match=r"Image.gz: byte 0x0: gzip data is truncated"):
        parse_kernel_image(packed[:-20], "Image.gz")


@pytest.mark.parametrize(
    ("flags", "page_size", "anywhere"),
    [(0b0010, 4096, False), (0b1100, 16384, True), (0b1110, 65536, True), (0b1000, None, True)],
)
def test_arm64_flags(flags: int, page_size: int | None, anywhere: bool) -> None:
    image = parse_kernel_image(arm64_image(flags=flags), "Image")
    assert image.boot_header is not None
    assert image.boot_header.page_size == page_size
    assert image.placement.relocatable is anywhere


def test_arm64_big_endian_is_refused() -> None:
    with pytest.raises(ImageError, match=r"be: byte 0x18: expected a little-endian kernel"):
        parse_kernel_image(arm64_image(flags=0b1011), "be")


def test_arm64_pre_317_header() -> None:
    image = parse_kernel_image(arm64_image(image_size=0, text_offset=0x80000), "old")
    assert image.placement.memory_size is None and image.placement.load_offset == 0x80000


def test_arm64_efi_stub_form() -> None:
    data = arm64_image(efi_stub=True)
    image = parse_kernel_image(data, "Image.efi")
    assert image.boot_header is not None and image.boot_header.efi_stub
    wrong = bytearray(data)
    struct.pack_into("<H", wrong, 0x44, 0x8664)
    with pytest.raises(ImageError, match=r"byte 0x44: expected PE machine 0xaa64 for aarch64"):
        parse_kernel_image(bytes(wrong), "Image.efi")


def test_riscv_image() -> None:
    image = parse_kernel_image(riscv_image(text_offset=0x200000, image_size=0x1234000), "rv")
    assert image.arch is Arch.RISCV64 and image.format is ImageFormat.IMAGE
    assert image.placement.relocatable and image.placement.alignment == 2 * MiB
    assert image.placement.memory_size == 0x1234000 and image.placement.load_offset == 0x200000
    assert image.boot_header is not None and image.boot_header.header_version == "0.2"
    assert image.version == SYNTH_VERSION


@pytest.mark.parametrize("compression", ["gzip", "zstd22", "xzkern", "lzma"])
def test_zboot_arm64(compression: str) -> None:
    inner = arm64_image(image_size=0x345000)
    data = zboot(inner, compression)
    image = parse_kernel_image(data, "vmlinuz.efi")
    assert image.format is ImageFormat.ZBOOT and image.arch is Arch.AARCH64
    assert image.zboot is not None
    assert image.zboot.compression_name == compression
    assert image.zboot.payload_offset == struct.unpack_from("<I", data, 8)[0] == 0x200
    assert image.zboot.payload_size == struct.unpack_from("<I", data, 12)[0]
    assert image.zboot.pe_machine == 0xAA64
    assert image.decompressed_size == len(inner)
    assert image.placement.memory_size == 0x345000 and image.placement.relocatable
    assert image.inner is not None and image.inner.format is ImageFormat.IMAGE
    assert image.kernel.loadable == inner
    assert image.version == SYNTH_VERSION
    summary = describe(image)
    assert_json_ready(summary)
    assert summary["format"] == "zboot"
    assert isinstance(summary["zboot"], dict) and summary["zboot"]["compression"] == {
        "gzip": "gzip", "zstd22": "zstd", "xzkern": "xz", "lzma": "lzma"
    }[compression]  # fmt: skip


def test_zboot_riscv() -> None:
    image = parse_kernel_image(zboot(riscv_image(), "gzip", machine=0x5064), "rv.efi")
    assert image.format is ImageFormat.ZBOOT and image.arch is Arch.RISCV64


def test_zboot_arch_mismatch() -> None:
    with pytest.raises(ImageError, match=r"expected a riscv64 Image inside this riscv64 PE"):
        parse_kernel_image(zboot(arm64_image(), "gzip", machine=0x5064), "mixed")


def test_zboot_unsupported_and_unknown_compression() -> None:
    data = bytearray(zboot(arm64_image(), "gzip"))
    data[24:28] = b"lzo\x00"
    with pytest.raises(ImageError, match=r"byte 0x200: lzo compression is not supported"):
        parse_kernel_image(bytes(data), "lzo")
    data[24:28] = b"lz4\x00"  # a gzip stream read as lz4's legacy chunks
    with pytest.raises(ImageError, match=r"^lz4: byte 0x200: lz4 chunk of \d+ bytes at \+0x4"):
        parse_kernel_image(bytes(data), "lz4")
    data[24:28] = b"zip\x00"
    with pytest.raises(ImageError, match=r"byte 0x18: expected a compression type .*'zip'"):
        parse_kernel_image(bytes(data), "zip")


def test_zboot_payload_past_the_end() -> None:
    data = zboot(arm64_image(), "gzip")
    with pytest.raises(ImageError, match=r"truncated at byte 0x200: expected zboot compressed"):
        parse_kernel_image(data[:0x210], "short")


# ---------------------------------------------------------------------------
# Synthetic UKI


def test_uki_with_bzimage(tmp_path: Path) -> None:
    kernel = bzimage(relocatable=False)
    data = uki(kernel, machine=0x8664)
    path = write(tmp_path, "uki.efi", data)
    # objdump checks the synthetic PE and says where .linux is.
    objdump = run("objdump", "-h", str(path))
    row = re.search(r"\.linux\s+([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", objdump)
    assert row, objdump
    image = parse_kernel_image(data, "uki.efi")
    assert image.format is ImageFormat.UKI and image.uki is not None
    assert image.uki.kernel_offset == int(row.group(2), 16)
    assert image.uki.kernel_size == int(row.group(1), 16) == len(kernel)
    assert image.uki.cmdline == "console=ttyS0 quiet"
    assert image.uki.uname == SYNTH_VERSION
    assert image.uki.initrd_size == 3000
    assert [s.name for s in image.uki.sections] == [
        ".text", ".osrel", ".cmdline", ".uname", ".linux", ".initrd"
    ]  # fmt: skip
    assert not image.placement.relocatable and image.placement.fixed_address == 0x1000000
    assert image.kernel.loadable == kernel
    assert image.bzimage is None and image.inner is not None and image.inner.bzimage is not None


def test_uki_with_arm64_zboot(tmp_path: Path) -> None:
    data = uki(zboot(arm64_image(), "zstd22"), machine=0xAA64)
    assert "Aarch64" in run("file", "-b", str(write(tmp_path, "uki.efi", data)))
    image = parse_kernel_image(data, "uki.efi")
    assert image.format is ImageFormat.UKI and image.arch is Arch.AARCH64
    assert image.inner is not None and image.inner.format is ImageFormat.ZBOOT
    assert image.kernel.format is ImageFormat.IMAGE
    summary = describe(image)
    assert_json_ready(summary)
    inner = summary["inner"]
    assert isinstance(inner, dict) and isinstance(inner["inner"], dict)


def test_pe_without_linux_section_is_not_a_kernel() -> None:
    data = pe_image([(".text", b"\xc3" * 100)])
    with pytest.raises(ImageError, match=r"pe.efi: byte 0x0: expected a kernel image"):
        parse_kernel_image(data, "pe.efi")


# ---------------------------------------------------------------------------
# Synthetic vmlinux ELF, checked against readelf


ELF_CASES = {
    "x86_64": dict(machine=62, entry=0x1000000),
    "aarch64-dyn": dict(
        machine=183, elf_type=3, entry=0xFFFF800008000000,
        segments=((0xFFFF800008000000, 0xFFFF800008000000, 0x300, 0x20000, 0x10000),),
    ),
    "riscv64": dict(machine=243, entry=0x80200000),
    "ppc64le": dict(
        machine=21, entry=0xC000000000000000, dynamic_section=True,
        segments=(
            (0xC000000000000000, 0, 0x400, 0x10000, 0x10000),
            (0xC000000000010000, 0x10000, 0x100, 0x8000, 0x10000),
        ),
    ),
    "ppc64": dict(machine=21, big_endian=True),
    "s390x": dict(machine=22, big_endian=True, entry=0x100000),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ELF_CASES))
def test_vmlinux_elf_matches_readelf(case: str, tmp_path: Path) -> None:
    data = elf64(**ELF_CASES[case])  # type: ignore[arg-type]
    path = write(tmp_path, "vmlinux", data)
    image = parse_kernel_image(data, "vmlinux")
    assert image.format is ImageFormat.VMLINUX
    assert image.arch == case.split("-")[0]
    _check_against_readelf(image, path)
    assert image.version == SYNTH_VERSION
    assert_json_ready(describe(image))


def test_elf32_and_foreign_machines_are_refused() -> None:
    data = bytearray(elf64(machine=62))
    data[4] = 1
    with pytest.raises(ImageError, match=r"byte 0x4: expected ELFCLASS64"):
        parse_kernel_image(bytes(data), "elf32")
    with pytest.raises(ImageError, match=r"byte 0x12: expected a kernel machine type"):
        parse_kernel_image(elf64(machine=40), "arm32")


def test_elf_segment_past_the_end() -> None:
    data = elf64(machine=62)
    with pytest.raises(ImageError, match=r"truncated at byte 0x78: expected contents of PT_LOAD 0"):
        parse_kernel_image(data[:0x100], "short")


# ---------------------------------------------------------------------------
# Unknown input and error messages


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"hello world" * 100, b"MZ" + bytes(200)])
def test_unknown_input(data: bytes) -> None:
    with pytest.raises(ImageError, match=r"^junk: byte 0x0: expected a kernel image"):
        parse_kernel_image(data, "junk")


# ---------------------------------------------------------------------------
# Property-based: truncated, bit-flipped and random input


SEEDS: list[bytes] = [
    bzimage(),
    bzimage(relocatable=False, protocol=0x020A, setup_sects=0),
    bzimage(protocol=0x0206, xloadflags=0),
    arm64_image(),
    arm64_image(efi_stub=True, image_size=0),
    riscv_image(),
    compress("gzip", arm64_image()),
    compress("zstd", arm64_image()),
    compress("xz", riscv_image()),
    compress("lzma", arm64_image()),
    zboot(arm64_image(), "gzip"),
    zboot(arm64_image(), "zstd22"),
    zboot(riscv_image(), "xzkern", machine=0x5064),
    uki(bzimage()),
    uki(zboot(arm64_image(), "gzip"), machine=0xAA64),
    elf64(machine=62),
    elf64(**ELF_CASES["ppc64le"]),  # type: ignore[arg-type]
    elf64(machine=22, big_endian=True),
]
PARSERS = [parse_kernel_image, *(fmt.parse for fmt in FORMATS)]


def _outcome(parser: object, data: bytes) -> None:
    """Only a clean, JSON-ready result or an ImageError may come out."""
    assert callable(parser)
    try:
        image = parser(data, "fuzz")
    except ImageError as error:
        message = str(error)
        assert message.startswith("fuzz") and "\n" not in message and "byte 0x" in message
        event("ImageError")
        return
    assert isinstance(image, KernelImage)
    json.dumps(describe(image))
    event(f"parsed {image.format}")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(SEEDS))
    how = draw(st.sampled_from(["truncate", "flip", "splice", "random", "header"]))
    if how == "random":
        return draw(st.binary(max_size=2048))
    data = bytearray(seed)
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:])
    # Flips anywhere, or concentrated in the first KiB where the headers live.
    limit = len(data) - 1 if how == "flip" else min(len(data), 1024) - 1
    for _ in range(draw(st.integers(1, 8))):
        bit = draw(st.integers(0, limit * 8 + 7))
        data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated(), parser=st.sampled_from(PARSERS))
def test_property_only_image_errors_escape(data: bytes, parser: object) -> None:
    _outcome(parser, data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cut=st.integers(0, 0x10000),
    flips=st.lists(st.integers(0, 0x800 * 8 - 1), max_size=6),
)
def test_property_real_amd64_header_damage(cut: int, flips: list[int]) -> None:
    data = bytearray(debian_kernel("x86_64").image)
    for bit in flips:
        data[bit // 8] ^= 1 << (bit % 8)
    _outcome(parse_kernel_image, bytes(data))
    _outcome(parse_kernel_image, bytes(data[:cut]))
