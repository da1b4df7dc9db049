"""The kexec syscalls through ctypes, and what the kernel says about kexec state.

Effects only: planning lives in builder.kexec.layout. Errors become `LoadError`
with the kernel's errno explained in kexec terms.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.arch import Arch, ArchInfo, arch_info, host_arch
from builder.errors import KdumpBuildError, LoadError
from builder.kexec.memmap import Range, parse_iomem
from builder.kexec.method import FileLoad, FileLoadProbe, LoadMethod, Lockdown, parse_lockdown

if TYPE_CHECKING:
    # Only for annotations: `status` (run at boot) must not pay for the planners.
    from builder.kexec.layout.core import Layout

__all__ = [
    "KEXEC_FILE_NO_INITRAMFS",
    "KEXEC_FILE_ON_CRASH",
    "KEXEC_FILE_UNLOAD",
    "KexecStatus",
    "crash_region",
    "kexec_file_load",
    "kexec_load",
    "kexec_status",
    "lockdown_mode",
    "probe_file_load",
    "require_this_machine",
    "unload",
]

KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4

CRASH_LOADED = Path("/sys/kernel/kexec_crash_loaded")
CRASH_SIZE = Path("/sys/kernel/kexec_crash_size")
LOCKDOWN = Path("/sys/kernel/security/lockdown")


class _Segment(ctypes.Structure):
    """struct kexec_segment (include/uapi/linux/kexec.h)."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("bufsz", ctypes.c_size_t),
        ("mem", ctypes.c_void_p),
        ("memsz", ctypes.c_size_t),
    ]


_EXPLAIN = {
    errno.EPERM: "not permitted (needs root with CAP_SYS_BOOT; under lockdown kexec_load is "
    "refused, use --method file)",
    errno.EADDRNOTAVAIL: "a segment or the entry lies outside the crash region",
    errno.EBUSY: "a crash kernel is being loaded or used right now",
    errno.EINVAL: "the kernel rejected the arguments (alignment, overlap or flags)",
    errno.ENOMEM: "no crash memory reserved (crashkernel= missing) or it is too small",
    errno.ENOSYS: "this kernel has no kexec support (CONFIG_KEXEC / CONFIG_KEXEC_FILE)",
    errno.EKEYREJECTED: "the kernel image's signature was rejected",
    errno.EBADMSG: "the kernel image's signature is missing or malformed",
    errno.ENOEXEC: "the kernel does not understand this image format",
}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _fail(call: str, error: int) -> LoadError:
    reason = _EXPLAIN.get(error, os.strerror(error))
    return LoadError(f"{call}: {errno.errorcode.get(error, str(error))}: {reason}")


def _syscall_number(call: str, arch: Arch, number: int | None) -> int:
    if number is None:
        raise LoadError(f"{call}: not available on {arch.value}")
    return number


def _for_this_machine(call: str, arch: Arch) -> ArchInfo:
    """The record of `arch`, which must be this machine's: syscall numbers are per arch."""
    host = host_arch()
    if arch is not host:
        raise LoadError(
            f"{call}: the crash kernel is built for {arch.value}, this machine is {host.value}"
        )
    return arch_info(arch)


def require_this_machine(arch: Arch) -> None:
    """A `LoadError` unless `arch` is this machine's: a build for another cannot be loaded here."""
    _for_this_machine("load", arch)


def kexec_load(layout: Layout) -> None:
    """Load `layout` as the crash kernel with kexec_load(2)."""
    arch = _for_this_machine("kexec_load", layout.arch)
    number = _syscall_number("kexec_load", layout.arch, arch.kexec_load_syscall)
    buffers = [ctypes.create_string_buffer(segment.data, max(1, segment.bufsz))
               for segment in layout.segments]  # fmt: skip
    array = (_Segment * len(layout.segments))()
    for slot, segment, buffer in zip(array, layout.segments, buffers, strict=True):
        slot.buf = ctypes.addressof(buffer) if segment.bufsz else None
        slot.bufsz = segment.bufsz
        slot.mem = segment.mem
        slot.memsz = segment.memsz
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(
        ctypes.c_long(number),
        ctypes.c_ulong(layout.entry),
        ctypes.c_ulong(len(layout.segments)),
        array,
        ctypes.c_ulong(layout.flags),
    )
    if result != 0:
        raise _fail("kexec_load", ctypes.get_errno())


def kexec_file_load(arch: Arch, kernel: Path, initrd: Path | None, cmdline: str) -> None:
    """Load a crash kernel with kexec_file_load(2): the kernel builds the layout itself."""
    info = _for_this_machine("kexec_file_load", arch)
    number = _syscall_number("kexec_file_load", arch, info.kexec_file_load_syscall)
    flags = KEXEC_FILE_ON_CRASH
    try:
        kernel_fd = os.open(kernel, os.O_RDONLY)
    except OSError as error:
        raise LoadError(f"{kernel}: {error.strerror}") from None
    initrd_fd = -1
    try:
        if initrd is None:
            flags |= KEXEC_FILE_NO_INITRAMFS
        else:
            try:
                initrd_fd = os.open(initrd, os.O_RDONLY)
            except OSError as error:
                raise LoadError(f"{initrd}: {error.strerror}") from None
        text = cmdline.encode() + b"\0"  # cmdline_len counts the NUL
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        result = libc.syscall(
            ctypes.c_long(number),
            ctypes.c_int(kernel_fd),
            ctypes.c_int(initrd_fd),
            ctypes.c_ulong(len(text)),
            ctypes.c_char_p(text),
            ctypes.c_ulong(flags),
        )
        if result != 0:
            raise _fail("kexec_file_load", ctypes.get_errno())
    finally:
        os.close(kernel_fd)
        if initrd_fd >= 0:
            os.close(initrd_fd)


def probe_file_load(arch: Arch) -> FileLoadProbe:
    """Whether this kernel offers kexec_file_load, found without loading or unloading anything.

    kexec_file_load(-1, -1, 0, NULL, 0) is a normal (not crash) load of fd
    -1: a kernel that has the call fails reading the fd with EBADF before it
    touches any image (kernel/kexec_file.c: only KEXEC_FILE_ON_CRASH frees
    the loaded crash kernel first, and flags are 0 here); one built without
    CONFIG_KEXEC_FILE answers ENOSYS (as does a seccomp filter that hides
    it). EPERM (not root, kexec disabled) leaves it unknown. `arch` must be
    this machine's.
    """
    info = _for_this_machine("kexec_file_load", arch)
    if info.kexec_file_load_syscall is None:
        return FileLoadProbe(FileLoad.ABSENT, f"no such syscall on {arch.value}")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(
        ctypes.c_long(info.kexec_file_load_syscall),
        ctypes.c_int(-1),
        ctypes.c_int(-1),
        ctypes.c_ulong(0),
        None,
        ctypes.c_ulong(0),
    )
    error = ctypes.get_errno() if result != 0 else 0
    name = errno.errorcode.get(error, str(error))
    if error == errno.EBADF:
        return FileLoadProbe(FileLoad.PRESENT, "probe answered EBADF")
    if error == errno.ENOSYS:
        return FileLoadProbe(FileLoad.ABSENT, "ENOSYS: the kernel has no CONFIG_KEXEC_FILE")
    return FileLoadProbe(FileLoad.UNKNOWN, f"probe answered {name}")


def unload(arch: Arch, *, method: LoadMethod) -> None:
    """Unload the crash kernel (kexec_load with no segments, or kexec_file_load UNLOAD)."""
    info = _for_this_machine("unload", arch)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    if method is LoadMethod.FILE:
        call = "kexec_file_load(UNLOAD)"
        result = libc.syscall(
            ctypes.c_long(_syscall_number(call, arch, info.kexec_file_load_syscall)),
            ctypes.c_int(-1),
            ctypes.c_int(-1),
            ctypes.c_ulong(0),
            None,
            ctypes.c_ulong(KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH),
        )
    else:
        # Imported here: at start-up, builder.kexec.layout.core would cost ~331 ms.
        from builder.kexec.layout.core import KEXEC_ON_CRASH

        call = "kexec_load(unload)"
        result = libc.syscall(
            ctypes.c_long(_syscall_number(call, arch, info.kexec_load_syscall)),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            None,
            ctypes.c_ulong(KEXEC_ON_CRASH | info.kexec_arch),
        )
    if result != 0:
        raise _fail(call, ctypes.get_errno())


def lockdown_mode(path: Path = LOCKDOWN) -> Lockdown | None:
    """The active lockdown mode, None if unknown (no securityfs file, or unreadable).

    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "lockdown"
    >>> _ = file.write_text("none [integrity] confidentiality\\n")
    >>> lockdown_mode(file)
    <Lockdown.INTEGRITY: 'integrity'>
    """
    try:
        return parse_lockdown(path.read_text())
    except OSError:
        return None


@dataclass(frozen=True)
class KexecStatus:
    """What /sys says: is a crash kernel loaded, how big is the region."""

    loaded: bool | None
    crash_size: int | None
    lockdown: Lockdown | None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def kexec_status(sys_kernel: Path = Path("/sys/kernel")) -> KexecStatus:
    """Read the kexec state files; None where a file is missing."""
    loaded = _read_int(sys_kernel / "kexec_crash_loaded")
    return KexecStatus(
        None if loaded is None else bool(loaded),
        _read_int(sys_kernel / "kexec_crash_size"),
        lockdown_mode(sys_kernel / "security" / "lockdown"),
    )


def crash_region(iomem: Path = Path("/proc/iomem")) -> Range | None:
    """The main crash region of the running system; None without one (or without iomem)."""
    try:
        return parse_iomem(iomem.read_text(), source=str(iomem)).crash_region()
    except (OSError, KdumpBuildError):
        return None
