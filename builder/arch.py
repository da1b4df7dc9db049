"""One record per architecture: every per-architecture fact the code uses lives here.

Adding an architecture means a new `ArchInfo` row here plus that
architecture's layout and purgatory files (builder/kexec/layout/,
builder/kexec/purgatory/); no other module spells an architecture name
(tests/unit/test_house.py checks that).

Sources: include/uapi/linux/kexec.h (KEXEC_ARCH_*, the ELF machine in the
high 16 bits), include/uapi/linux/elf-em.h, the syscall tables
(arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h,
arch/powerpc and arch/s390 syscall.tbl), arch/*/include/asm/crash_reserve.h
(CRASH_ALIGN, CRASH_ADDR_LOW_MAX, CRASH_ADDR_HIGH_MAX) and
kernel/crash_reserve.c, the PE/COFF machine types of the EFI stubs, and
Debian's architecture names and multiarch tuples.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from enum import StrEnum

from builder.errors import RecipeError
from builder.units import GiB, KiB, MiB, TiB

# kernel/dma/swiotlb.c IO_TLB_DEFAULT_SIZE: the swiotlb size without swiotlb=.
SWIOTLB_DEFAULT_SIZE = 64 * MiB


class KernelTextLookup(StrEnum):
    """How /proc/kcore's program headers show the kernel image mapping."""

    # The PT_LOAD inside the fixed window `ArchInfo.kernel_text_window`.
    WINDOW = "window"
    # The PT_LOAD with a physical address at the highest virtual address (the
    # kernel image sits above the linear map); every other PT_LOAD with a
    # physical address is the linear map, with one offset. No window needed:
    # it holds for any VA size and KASLR offset (fs/proc/kcore.c: KCORE_TEXT
    # gets __pa_symbol(_text), KCORE_RAM __pa(), everything else -1).
    ABOVE_LINEAR_MAP = "above-linear-map"


class Arch(StrEnum):
    """Kernel architectures, named as `uname -m` prints them."""

    X86_64 = "x86_64"
    I386 = "i386"
    AARCH64 = "aarch64"
    RISCV64 = "riscv64"
    PPC64LE = "ppc64le"
    PPC64 = "ppc64"
    S390X = "s390x"


@dataclass(frozen=True)
class CrashReserveRules:
    """How the kernel places a `crashkernel=` reservation on this architecture."""

    align: int  # CRASH_ALIGN: alignment of the reservation's base
    low_max: int  # CRASH_ADDR_LOW_MAX: where "low" memory ends
    high_max: int  # CRASH_ADDR_HIGH_MAX
    # DEFAULT_CRASH_KERNEL_LOW_SIZE; None: x86's crash_low_size_default(), swiotlb-based;
    # 0: `,high` without `,low` gets no low range.
    fixed_default_low: int | None
    # RAM assumed below low_max when the caller does not say: a QEMU q35
    # guest with more than 2.75 GiB keeps 2 GiB below 4 GiB.
    assumed_low_ram: int = 2 * GiB
    # Whether a plain crashkernel=X that finds no room below low_max is placed
    # above it (with the default low range) instead of reserving nothing.
    high_fallback: bool = True
    # Kernels older than the series here reserve by other rules: (series, those rules).
    older: tuple[tuple[int, int], CrashReserveRules] | None = None
    # The first series whose `crashkernel=SIZE,cma` kdump-build can use: the kernel
    # reserves it and our loaders hand its ranges to the capture kernel. None: never.
    cma_since: tuple[int, int] | None = None

    def supports_cma(self, series: tuple[int, int] | None) -> bool:
        """Whether `crashkernel=,cma` works for a kernel of `series` (None: the newest).

        >>> rules = ARCHES[Arch.X86_64].crash
        >>> rules is not None and (rules.supports_cma((6, 12)), rules.supports_cma((7, 2)))
        (False, True)
        """
        since = self.cma_since
        return since is not None and (series is None or series >= since)

    def for_kernel(self, series: tuple[int, int] | None) -> CrashReserveRules:
        """The rules a kernel of `series` (major, minor) follows; None: the current ones.

        >>> rules = ARCHES[Arch.AARCH64].crash
        >>> rules is not None and rules.for_kernel((6, 1)).fixed_default_low
        0
        >>> rules is not None and rules.for_kernel(None).fixed_default_low // MiB
        128
        """
        rules = self
        while series is not None and rules.older is not None and series < rules.older[0]:
            rules = rules.older[1]
        return rules

    def default_low(self, swiotlb_bytes: int = SWIOTLB_DEFAULT_SIZE) -> int:
        """The low reservation added when the main one lands above `low_max`.

        >>> CrashReserveRules(16 * MiB, 4 * GiB, TiB, None).default_low() // MiB
        256
        """
        if self.fixed_default_low is not None:
            return self.fixed_default_low
        # x86_64: swiotlb plus 8 MiB for other DMA, at least 256 MiB.
        return max(swiotlb_bytes + 8 * MiB, 256 * MiB)


@dataclass(frozen=True)
class QemuMachine:
    """How tests and benchmarks boot this architecture under QEMU's TCG."""

    system: str  # the qemu-system-* binary
    user: str  # the qemu-user binary (Debian's qemu-user-static) that runs one of its programs
    machine: str | None  # -M, None for the binary's default
    cpu: str | None  # -cpu, None for the default
    console: str  # the serial console device the kernel writes to
    firmware: tuple[str, ...] = ()  # extra arguments (OpenSBI on RISC-V)


@dataclass(frozen=True)
class CollectorLimit:
    """A kernel configuration of this architecture whose memory makedumpfile cannot read."""

    config: tuple[tuple[str, str], ...]  # every one of these options with this value
    # The first makedumpfile release that reads it; None: no release does yet.
    read_from: tuple[int, int, int] | None
    what: str  # the configuration, in words


@dataclass(frozen=True)
class ArchInfo:
    """Everything that differs per architecture."""

    arch: Arch
    debian: str  # dpkg's architecture name
    multiarch: str  # Debian's multiarch tuple: /lib/<tuple>, /usr/lib/<tuple>
    dynamic_loader: str  # PT_INTERP of a Debian program
    elf_machine: int  # e_machine (EM_*)
    big_endian: bool
    pe_machine: int | None  # PE/COFF Machine of its EFI stub
    # Base alignment of a relocatable kernel image, where its header does not say.
    image_alignment: int
    kexec_load_syscall: int | None
    kexec_file_load_syscall: int | None
    # None where kdump-build does not predict the reservation.
    crash: CrashReserveRules | None
    qemu: QemuMachine | None
    # Kernel options a reused (relocatable) capture kernel must have besides the
    # dump options; riscv kernels before 6.5 have no CONFIG_RELOCATABLE yet run
    # from any PMD-aligned address, so nothing is asked of them.
    reuse_options: tuple[str, ...] = ("CONFIG_RELOCATABLE",)
    # Where the early microcode loader looks in an uncompressed cpio at the start of
    # the initrd (arch/x86/kernel/cpu/microcode); None: no early microcode loader.
    early_microcode_dir: str | None = None
    # How /proc/kcore shows the kernel text (see KernelTextLookup), and for
    # WINDOW the kernel image mapping's virtual window [start, end); None: not looked for.
    kernel_text: KernelTextLookup = KernelTextLookup.WINDOW
    kernel_text_window: tuple[int, int] | None = None
    # ELF class of its kernel and programs: 64, or 32 (EI_CLASS ELFCLASS32).
    elf_class: int = 64
    # The kexec_load flag that lets the kernel rewrite a crash image's ELF core
    # header on CPU and memory hotplug (builder/kexec/hotplug.py); None where the
    # kernel does not (or our layout of that architecture does not support it).
    crash_hotplug_flag: int | None = None
    # Kernels makedumpfile stops on ("not supported") however new the kernel is.
    collector_limits: tuple[CollectorLimit, ...] = ()

    @property
    def kexec_arch(self) -> int:
        """KEXEC_ARCH_*: the ELF machine in the high 16 bits of kexec_load's flags.

        >>> hex(ARCHES[Arch.X86_64].kexec_arch), hex(ARCHES[Arch.AARCH64].kexec_arch)
        ('0x3e0000', '0xb70000')
        """
        return self.elf_machine << 16


# Memory ceilings that are architecture limits rather than configuration.
_X86_64_MAXMEM = 64 * TiB
_ARM64_PA_LIMIT = 1 << 48
_RISCV64_PA_LIMIT = 1 << 56

# arm64 (arch/arm64/mm/init.c): CRASH_ALIGN 2 MiB, CRASH_ADDR_LOW_MAX is
# arm64_dma_phys_limit (4 GiB on the usual platforms, QEMU virt included).
# Since v6.2 (a149cf00b158 "arm64: kdump: Provide default size when
# crashkernel=Y,low is not specified", a9ae89df7377 "... Support
# crashkernel=X fall back to reserve region above DMA zones") `,high` alone
# gets a 128 MiB low range and a plain value falls back above 4 GiB. Up to 6.1
# (Debian 12, measured in QEMU virt) neither: `,high` alone reserves no low
# range, and a plain value is searched below 4 GiB only. QEMU virt starts RAM
# at 1 GiB: of a 4 GiB guest, 3 GiB are below 4 GiB.
_ARM64_CRASH = CrashReserveRules(
    2 * MiB,
    4 * GiB,
    _ARM64_PA_LIMIT,
    128 * MiB,
    assumed_low_ram=3 * GiB,
    older=(
        (6, 2),
        CrashReserveRules(
            2 * MiB, 4 * GiB, _ARM64_PA_LIMIT, 0, assumed_low_ram=3 * GiB, high_fallback=False
        ),
    ),
)

ARCHES: dict[Arch, ArchInfo] = {
    info.arch: info
    for info in (
        ArchInfo(
            Arch.X86_64,
            debian="amd64",
            multiarch="x86_64-linux-gnu",
            dynamic_loader="/lib64/ld-linux-x86-64.so.2",
            elf_machine=62,
            big_endian=False,
            pe_machine=0x8664,
            image_alignment=2 * MiB,
            kexec_load_syscall=246,
            kexec_file_load_syscall=320,
            # crashkernel=,cma: 6.17 (kernel/crash_reserve.c reserve_crashkernel_cma, called
            # from arch/x86/kernel/setup.c); the loaders give its ranges to the capture
            # through the e820 map. The device-tree architectures got it later, and our
            # loaders do not pass more than two linux,usable-memory-range pairs yet.
            crash=CrashReserveRules(16 * MiB, 4 * GiB, _X86_64_MAXMEM, None, cma_since=(6, 17)),
            qemu=QemuMachine("qemu-system-x86_64", "qemu-x86_64-static", None, None, "ttyS0"),
            early_microcode_dir="/kernel/x86/microcode",
            # Documentation/arch/x86/x86_64/mm.rst: __START_KERNEL_map to MODULES_VADDR.
            kernel_text_window=(0xFFFF_FFFF_8000_0000, 0xFFFF_FFFF_C000_0000),
            # KEXEC_UPDATE_ELFCOREHDR: arch/x86/kernel/crash.c takes it since v6.6
            # (ARCH_SUPPORTS_CRASH_HOTPLUG); the later 0x8 only since v6.10.
            crash_hotplug_flag=0x4,
        ),
        ArchInfo(
            Arch.I386,
            debian="i386",
            multiarch="i386-linux-gnu",
            dynamic_loader="/lib/ld-linux.so.2",
            elf_machine=3,
            big_endian=False,
            pe_machine=0x014C,
            image_alignment=4 * KiB,
            kexec_load_syscall=None,
            kexec_file_load_syscall=None,
            crash=None,
            qemu=None,
            elf_class=32,
        ),
        ArchInfo(
            Arch.AARCH64,
            debian="arm64",
            multiarch="aarch64-linux-gnu",
            dynamic_loader="/lib/ld-linux-aarch64.so.1",
            elf_machine=183,
            big_endian=False,
            pe_machine=0xAA64,
            # booting.rst: "placed text_offset bytes from a 2MB aligned base address".
            image_alignment=2 * MiB,
            kexec_load_syscall=104,
            kexec_file_load_syscall=294,
            crash=_ARM64_CRASH,
            # pauth-impdef: QEMU's own pointer-authentication hash instead of QARMA,
            # much cheaper under TCG (the kernel signs every return address).
            qemu=QemuMachine(
                "qemu-system-aarch64",
                "qemu-aarch64-static",
                "virt",
                "max,pauth-impdef=on",
                "ttyAMA0",
            ),
            kernel_text=KernelTextLookup.ABOVE_LINEAR_MAP,
            # makedumpfile's arch/arm64.c (calculate_plat_config) knows 2 to 4 page-table
            # levels; 4K pages with 52-bit VA (LPA2, 5 levels: Debian 14's arm64 kernel)
            # stop it with "PAGE SIZE 0x1000 and VA Bits 52 not supported" up to 1.7.9;
            # upstream reads them since commit b7587f1 (May 2026), in no release yet.
            collector_limits=(
                CollectorLimit(
                    (("CONFIG_ARM64_4K_PAGES", "y"), ("CONFIG_ARM64_VA_BITS", "52")),
                    None,
                    "4K pages with 52-bit virtual addresses, 5 page-table levels",
                ),
            ),
        ),
        ArchInfo(
            Arch.RISCV64,
            debian="riscv64",
            multiarch="riscv64-linux-gnu",
            dynamic_loader="/lib/ld-linux-riscv64-lp64d.so.1",
            elf_machine=243,
            big_endian=False,
            pe_machine=0x5064,
            # RISC-V kernels run at any PMD-aligned physical address: 2 MiB on rv64.
            image_alignment=2 * MiB,
            kexec_load_syscall=104,
            kexec_file_load_syscall=294,
            crash=CrashReserveRules(2 * MiB, 4 * GiB, _RISCV64_PA_LIMIT, 128 * MiB),
            qemu=QemuMachine(
                "qemu-system-riscv64",
                "qemu-riscv64-static",
                "virt",
                None,
                "ttyS0",
                ("-bios", "default"),
            ),
            reuse_options=(),
            # The kernel mapping (0xffffffff80000000 on rv64) lies above the linear map at
            # every VA size (sv39/48/57); measured on Debian 13's 6.12 in QEMU virt.
            kernel_text=KernelTextLookup.ABOVE_LINEAR_MAP,
        ),
        ArchInfo(
            Arch.PPC64LE,
            debian="ppc64el",
            multiarch="powerpc64le-linux-gnu",
            dynamic_loader="/lib64/ld64.so.2",
            elf_machine=21,
            big_endian=False,
            pe_machine=None,
            image_alignment=64 * KiB,
            kexec_load_syscall=268,
            kexec_file_load_syscall=382,
            crash=None,
            qemu=None,
        ),
        ArchInfo(
            Arch.PPC64,
            debian="ppc64",
            multiarch="powerpc64-linux-gnu",
            dynamic_loader="/lib64/ld64.so.1",
            elf_machine=21,
            big_endian=True,
            pe_machine=None,
            image_alignment=64 * KiB,
            kexec_load_syscall=268,
            kexec_file_load_syscall=382,
            crash=None,
            qemu=None,
        ),
        ArchInfo(
            Arch.S390X,
            debian="s390x",
            multiarch="s390x-linux-gnu",
            dynamic_loader="/lib/ld64.so.1",
            elf_machine=22,
            big_endian=True,
            pe_machine=None,
            image_alignment=4 * KiB,
            kexec_load_syscall=277,
            kexec_file_load_syscall=381,
            crash=None,
            qemu=None,
        ),
    )
}

# What a recipe, and `kdump-build fit` without one, assume when no architecture is named.
DEFAULT_ARCH = Arch.X86_64
# Architectures a recipe may build for: those whose reservation is predicted.
RECIPE_ARCHES = tuple(info.arch for info in ARCHES.values() if info.crash is not None)
# Other spellings people use: Debian's names, and the kernel's `arm64`.
_ALIASES = {info.debian: info.arch for info in ARCHES.values()} | {"arm64": Arch.AARCH64}


def arch_info(arch: Arch | str) -> ArchInfo:
    """The record of `arch`, given as an `Arch`, a `uname -m` name or a Debian name.

    >>> arch_info("amd64").arch, arch_info("arm64").debian
    (<Arch.X86_64: 'x86_64'>, 'arm64')
    """
    return ARCHES[parse_arch(arch, "arch")]


def parse_arch(value: Arch | str, where: str) -> Arch:
    """`value` as an `Arch`; a `RecipeError` naming `where` and the choices otherwise.

    >>> parse_arch("aarch64", "target.arch")
    <Arch.AARCH64: 'aarch64'>
    >>> parse_arch("sparc", "--arch")
    Traceback (most recent call last):
    ...
    builder.errors.RecipeError: --arch: 'sparc' is not one of x86_64, i386, aarch64, ...
    """
    if isinstance(value, Arch):
        return value
    try:
        return Arch(value)
    except ValueError:
        pass
    if value in _ALIASES:
        return _ALIASES[value]
    choices = ", ".join(arch.value for arch in Arch)
    raise RecipeError(f"{where}: {value!r} is not one of {choices}")


def by_elf_machine(machine: int, *, big_endian: bool = False) -> ArchInfo | None:
    """The architecture whose programs carry e_machine `machine` (and byte order).

    >>> by_elf_machine(183).arch, by_elf_machine(21, big_endian=True).arch
    (<Arch.AARCH64: 'aarch64'>, <Arch.PPC64: 'ppc64'>)
    """
    for info in ARCHES.values():
        if info.elf_machine == machine and info.big_endian == big_endian:
            return info
    return None


def elf_machine_name(machine: int, *, big_endian: bool = False) -> str:
    """How a message names the architecture of ELF machine `machine`.

    >>> elf_machine_name(243), elf_machine_name(9999)
    ('riscv64', 'an unknown machine')
    """
    info = by_elf_machine(machine, big_endian=big_endian)
    return info.arch.value if info is not None else "an unknown machine"


def by_pe_machine(machine: int) -> ArchInfo | None:
    """The architecture of an EFI stub whose PE/COFF Machine is `machine`.

    >>> by_pe_machine(0xAA64).arch
    <Arch.AARCH64: 'aarch64'>
    """
    for info in ARCHES.values():
        if info.pe_machine == machine:
            return info
    return None


def host_arch() -> Arch:
    """The architecture of the machine this runs on (where `load` talks to the kernel)."""
    return parse_arch(platform.machine(), "this machine's architecture")
