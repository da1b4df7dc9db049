"""What the running kernel says about where its crash data lives.

A crash layout needs facts only the main kernel knows: the physical address
of each possible CPU's `crash_notes` buffer, of the vmcoreinfo note, where
its text is mapped (KASLR moves it), where its direct map starts, and where
firmware left the ACPI RSDP. They are read from a root laid out like the live
system (`/` on the target, or a directory captured from it for offline use):

    sys/devices/system/cpu/possible            "0-3"
    sys/devices/system/cpu/cpuN/crash_notes    physical address, hex
    sys/devices/system/cpu/cpuN/crash_notes_size   bytes, decimal
    sys/kernel/vmcoreinfo                      "<addr> <size>", both hex
    sys/kernel/boot_params/data                the zero page the kernel booted with (x86)
    sys/firmware/fdt                           the device tree it booted with (arm64, riscv)
    proc/kcore                                 only its ELF headers are read

`capture_crash_info` copies exactly these (kcore cut after its program
headers), and proc/iomem, so a layout can be computed on another machine.

The kernel text and the direct map come from kcore's PT_LOADs, never from
/proc/kallsyms: Debian's arm64 kernels have no `_text` there
(CONFIG_KALLSYMS_ALL off), which is why kexec-tools writes a broken ELF
core header on them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from builder.arch import Arch, KernelTextLookup, arch_info, elf_machine_name
from builder.atomic import replace_directory
from builder.binfmt.elf import PT_LOAD, ElfFile
from builder.errors import LayoutError
from builder.kexecfs import KexecFile

__all__ = [
    "CRASH_HOTPLUG_FILES",
    "CpuNote",
    "CrashInfo",
    "KernelText",
    "capture_crash_info",
    "parse_cpu_list",
    "parse_kcore_headers",
    "present_cpus",
    "read_crash_info",
    "read_device_tree",
]

CPU_DIR = "sys/devices/system/cpu"
VMCOREINFO = "sys/kernel/vmcoreinfo"
BOOT_PARAMS = "sys/kernel/boot_params/data"
DEVICE_TREE = "sys/firmware/fdt"
KCORE = "proc/kcore"
IOMEM = "proc/iomem"  # not read here: `layout --iomem` takes it
# Whether the kernel rewrites a loaded ELF core header (read by kexec.hotplug).
CRASH_HOTPLUG_FILES = (f"{CPU_DIR}/crash_hotplug", "sys/devices/system/memory/crash_hotplug")

# The largest CONFIG_NR_CPUS any architecture allows (arch/x86/Kconfig: range 2 8192).
MAX_CPUS = 8192
_BOOT_PARAMS_ACPI_RSDP = 0x070  # zero-page.rst: acpi_rsdp_addr, u64
_EHDR_SIZE = 64  # Elf64_Ehdr: kcore is always ELFCLASS64 on the architectures we load
# 64 + 65535 program headers of 56 bytes: no kcore's headers reach further.
_MAX_KCORE_HEADERS = 4 << 20
_NO_PADDR = (1 << 64) - 1  # kcore's p_paddr for ranges with no physical address
_ADDRESS_SPACE = 1 << 64


@dataclass(frozen=True)
class CpuNote:
    """One possible CPU's crash_notes buffer (its registers at crash time)."""

    cpu: int
    address: int
    size: int


@dataclass(frozen=True)
class KernelText:
    """The kernel image mapping: `_text` and `_end - _text`, as /proc/kcore shows it."""

    vaddr: int
    paddr: int
    size: int


@dataclass(frozen=True)
class CrashInfo:
    """Everything a crash layout needs from the main kernel besides its memory map."""

    cpu_notes: tuple[CpuNote, ...]
    vmcoreinfo_address: int
    vmcoreinfo_size: int
    kernel_text: KernelText | None
    page_offset: int | None  # virtual address of physical 0 in the direct map
    acpi_rsdp: int  # 0 when unknown: the capture kernel then scans for it

    def to_json(self) -> dict[str, object]:
        text = self.kernel_text
        return {
            "cpu_notes": [
                {"cpu": note.cpu, "address": note.address, "size": note.size}
                for note in self.cpu_notes
            ],
            "vmcoreinfo": {"address": self.vmcoreinfo_address, "size": self.vmcoreinfo_size},
            "kernel_text": None
            if text is None
            else {"vaddr": text.vaddr, "paddr": text.paddr, "size": text.size},
            "page_offset": self.page_offset,
            "acpi_rsdp": self.acpi_rsdp,
        }


def parse_cpu_list(text: str, source: str) -> tuple[int, ...]:
    """Parse a sysfs CPU list such as ``0-3,8,10-11``.

    >>> parse_cpu_list("0-2,5\\n", "possible")
    (0, 1, 2, 5)
    """
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, dash, last = part.partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise LayoutError(f"{source}: not a CPU list: {text.strip()!r}") from None
        if not 0 <= low <= high < MAX_CPUS:
            raise LayoutError(f"{source}: bad CPU range {part!r}")
        cpus.extend(range(low, high + 1))
        if len(cpus) > MAX_CPUS:
            raise LayoutError(f"{source}: more than {MAX_CPUS} CPUs")
    if not cpus:
        raise LayoutError(f"{source}: empty CPU list")
    return tuple(cpus)


def parse_kcore_headers(
    data: bytes,
    source: str,
    text_window: tuple[int, int] | None,
    lookup: KernelTextLookup = KernelTextLookup.WINDOW,
    *,
    machine: int | None = None,
) -> tuple[KernelText | None, int | None]:
    """Kernel text mapping and direct-map offset from /proc/kcore's program headers.

    kcore gives the text as `_text` with size `_end - _text`, which is what
    the in-kernel loader writes into its own ELF core header. With `lookup`
    WINDOW the text segment is the PT_LOAD inside `text_window`
    (`ArchInfo.kernel_text_window`; None: not looked for) and the direct
    map offset is vaddr - paddr of any other PT_LOAD with a physical
    address. With ABOVE_LINEAR_MAP see `KernelTextLookup`. With `machine`
    (an e_machine), a kcore of another architecture is refused: its
    addresses would make a layout that loads but describes no memory.

    >>> from builder.binfmt.elf import _tiny_elf
    >>> parse_kcore_headers(_tiny_elf(), "kcore", None)
    (None, None)
    """
    elf = ElfFile(data, source, LayoutError)
    if elf.elf_class != 64 or elf.big_endian:
        raise LayoutError(f"{source}: not a 64-bit little-endian ELF file")
    if machine is not None and elf.machine != machine:
        raise LayoutError(
            f"{source}: byte 0x12: e_machine {elf.machine} is {elf_machine_name(elf.machine)}, "
            f"the layout is for {elf_machine_name(machine)} (captured on another machine?)"
        )
    mapped = [(h.vaddr, h.paddr, h.memsz) for h in elf.segments(PT_LOAD) if h.paddr != _NO_PADDR]
    if lookup is KernelTextLookup.ABOVE_LINEAR_MAP:
        return _above_linear_map(mapped, source)
    text: KernelText | None = None
    page_offset: int | None = None
    for vaddr, paddr, memsz in mapped:
        if text_window is not None and text_window[0] <= vaddr < text_window[1]:
            if text is None:
                text = KernelText(vaddr, paddr, memsz)
        elif page_offset is None and vaddr >= paddr:
            page_offset = vaddr - paddr
    return text, page_offset


def _above_linear_map(mapped: list[tuple[int, int, int]], source: str) -> tuple[KernelText, int]:
    """The highest mapped PT_LOAD is the kernel image; the rest, the linear map, share an offset."""
    if len(mapped) < 2:
        raise LayoutError(
            f"{source}: {len(mapped)} PT_LOAD(s) with a physical address; expected the kernel "
            "image and the linear map"
        )
    text = max(mapped)
    linear = [entry for entry in mapped if entry is not text]
    offsets = sorted({(vaddr - paddr) % _ADDRESS_SPACE for vaddr, paddr, _ in linear})
    if len(offsets) != 1:
        shown = ", ".join(f"{offset:#x}" for offset in offsets)
        raise LayoutError(f"{source}: the linear map's PT_LOADs disagree on vaddr - paddr: {shown}")
    return KernelText(*text), offsets[0]


def _read(root: Path, relative: str) -> bytes:
    path = root / relative
    try:
        return path.read_bytes()
    except OSError as error:
        raise LayoutError(f"{path}: {error.strerror or error}") from None


def _read_text(root: Path, relative: str) -> str:
    return _read(root, relative).decode("ascii", errors="replace")


def _hex(text: str, path: Path) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise LayoutError(f"{path}: not a hex number: {text!r}") from None


def read_crash_info(root: Path, arch: Arch, *, kernel_code_start: int | None = None) -> CrashInfo:
    """Read `CrashInfo` of an `arch` kernel from `root` (``/`` on the live system).

    `kernel_code_start` ("Kernel code" in /proc/iomem) is the physical text
    address when kcore does not give one.
    """
    possible = parse_cpu_list(
        _read_text(root, f"{CPU_DIR}/possible"), str(root / CPU_DIR / "possible")
    )
    notes: list[CpuNote] = []
    for cpu in present_cpus(root, possible):
        base = f"{CPU_DIR}/cpu{cpu}"
        address = _hex(_read_text(root, f"{base}/crash_notes").strip(), root / base / "crash_notes")
        size_text = _read_text(root, f"{base}/crash_notes_size").strip()
        try:
            size = int(size_text)
        except ValueError:
            raise LayoutError(
                f"{root / base / 'crash_notes_size'}: not a number: {size_text!r}"
            ) from None
        if address == 0 or size <= 0:
            raise LayoutError(f"{root / base}: crash_notes {address:#x} size {size} is unusable")
        notes.append(CpuNote(cpu, address, size))

    if not notes:
        listed = _read_text(root, f"{CPU_DIR}/possible").strip()
        raise LayoutError(f"{root / CPU_DIR}: no cpuN directory for any possible CPU ({listed})")
    fields = _read_text(root, VMCOREINFO).split()
    if len(fields) != 2:
        raise LayoutError(f"{root / VMCOREINFO}: expected '<address> <size>', got {fields!r}")
    vmcoreinfo_address = _hex(fields[0], root / VMCOREINFO)
    vmcoreinfo_size = _hex(fields[1], root / VMCOREINFO)

    info = arch_info(arch)
    text, page_offset = parse_kcore_headers(
        _kcore_headers(root / KCORE),
        str(root / KCORE),
        info.kernel_text_window,
        info.kernel_text,
        machine=info.elf_machine,
    )
    if text is not None and text.paddr == _NO_PADDR:
        if kernel_code_start is None:
            raise LayoutError(f"{root / KCORE}: kernel text has no physical address")
        text = KernelText(text.vaddr, kernel_code_start, text.size)

    acpi_rsdp = 0
    boot_params = root / BOOT_PARAMS
    if boot_params.exists():
        data = _read(root, BOOT_PARAMS)
        if len(data) >= _BOOT_PARAMS_ACPI_RSDP + 8:
            (acpi_rsdp,) = struct.unpack_from("<Q", data, _BOOT_PARAMS_ACPI_RSDP)
    return CrashInfo(
        tuple(notes), vmcoreinfo_address, vmcoreinfo_size, text, page_offset, acpi_rsdp
    )


def present_cpus(root: Path, possible: tuple[int, ...]) -> tuple[int, ...]:
    """The possible CPUs that sysfs shows (a cpuN directory): the present ones.

    A CPU that may be hot-added later (QEMU `-smp 1,maxcpus=2`) is possible
    but has no directory, hence no crash_notes address to read, until it
    comes; a kernel with crash hotplug adds its note then (kexec.hotplug).
    """
    return tuple(cpu for cpu in possible if (root / CPU_DIR / f"cpu{cpu}").is_dir())


def read_device_tree(root: Path) -> bytes | None:
    """The device tree the kernel of `root` booted with; None where it has none (x86)."""
    return _read(root, DEVICE_TREE) if (root / DEVICE_TREE).exists() else None


def _kcore_headers(path: Path) -> bytes:
    """The ELF header and program headers of kcore (never its memory)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_EHDR_SIZE)
            if len(head) < _EHDR_SIZE:
                raise LayoutError(f"{path}: shorter than an ELF header")
            # Only the sizes, to know how much to read; ElfFile checks the rest.
            (phoff,) = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            end = phoff + phentsize * phnum
            if end > _MAX_KCORE_HEADERS:
                # kcore's own start at byte 0x40; a damaged header must not make us
                # read gigabytes of a file as large as the memory it describes.
                raise LayoutError(
                    f"{path}: byte 0x20: program headers end at byte {end:#x}, "
                    f"past {_MAX_KCORE_HEADERS:#x} (not a kcore header)"
                )
            handle.seek(0)
            return handle.read(end)
    except OSError as error:
        raise LayoutError(f"{path}: {error.strerror or error}") from None


def capture_crash_info(root: Path, destination: Path) -> None:
    """Copy what `read_crash_info` reads, and the memory map, from `root` into `destination`.

    Everything is read first and written as one new directory
    (builder.atomic.replace_directory): an existing directory of the user's
    is refused, never written into.
    """
    possible = parse_cpu_list(
        _read_text(root, f"{CPU_DIR}/possible"), str(root / CPU_DIR / "possible")
    )
    files = [f"{CPU_DIR}/possible", VMCOREINFO, IOMEM]
    for cpu in present_cpus(root, possible):
        files += [f"{CPU_DIR}/cpu{cpu}/crash_notes", f"{CPU_DIR}/cpu{cpu}/crash_notes_size"]
    optional = (BOOT_PARAMS, DEVICE_TREE, *CRASH_HOTPLUG_FILES)
    files += [name for name in optional if (root / name).exists()]
    # The `crashkernel=,cma` ranges, from the file the kernel keeps them in (kexecfs).
    cma = KexecFile.CRASH_CMA_RANGES.path(root / "sys" / "kernel")
    files += [str(cma.relative_to(root))] if cma.exists() else []
    contents = {relative: _read(root, relative) for relative in files}
    contents[KCORE] = _kcore_headers(root / KCORE)

    def fill(staging: Path) -> None:
        for relative, data in contents.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    # KASLR offsets, crash note addresses, the memory map: for root's eyes only.
    replace_directory(destination, fill, mode=0o700)
