"""Crash hotplug: a vCPU and a DIMM hot-added after the load are in the dump.

One Debian 13 guest (6.12, CONFIG_CRASH_HOTPLUG) boots with one of two
possible CPUs and 1 GiB of 2 GiB, loads the capture with
`kdump-build load` (our layout and purgatory), and then QEMU hot-adds a vCPU and a 512 MiB
pc-dimm over QMP. The guest brings both online and crashes on the new CPU.
The kernel must have rewritten the ELF core header the load gave it
(KEXEC_UPDATE_ELFCOREHDR) or the dump misses both: the new CPU's crash
notes, and the new memory range. Checked on the saved dump with
makedumpfile (the crashed kernel's log: the panic on CPU 1) and by reading
the kdump-compressed file's own headers (the notes the capture kernel found
in /proc/vmcore, and the highest page frame it described).

The guest must believe it runs under a hypervisor: the kernel counts QEMU's
"Enabled=0" MADT entries (QEMU 7.2's MADT predates the online-capable bit) as
hot-pluggable CPUs only then (arch/x86/kernel/acpi/boot.c,
acpi_is_processor_usable()), and TCG shows no hypervisor signature in CPUID.
The kernel's VMware detection does not need one: without the CPUID hypervisor
bit it accepts a DMI serial naming VMware plus an answer on the VMware
backdoor port, which QEMU's vmport device gives (vmware.c, vmware_platform()).
Without this, 6.12 says "Allowing 1 present CPUs plus 0 hotplug CPUs".
"""

from __future__ import annotations

import json
import re
import shlex
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.paths import REPO
from tests.support.qmp import Qmp, qmp_option
from tests.vm import harness

pytestmark = pytest.mark.vm

TRIXIE_RECIPE = REPO / "recipes" / "qemu-x86_64-trixie.toml"
DIMM_SIZE = 512 << 20
# A second, absent CPU, and a guest that detects VMware (see the module's docstring):
# no CPUID hypervisor bit, "VMware" in the DMI serial, the backdoor port on.
HOTPLUG_CPU_OPTIONS = (
    "-smp", "1,maxcpus=2",
    "-cpu", "qemu64,-hypervisor",
    "-smbios", "type=1,serial=VMware-kdump-build-test",
    "-machine", "pc,vmport=on",
)  # fmt: skip
PAGE = 4096

# The main side: load, wait for the hot-adds, online them, crash on CPU 1.
BODY = """
mount -t tmpfs tmpfs /host/run
cpus=/sys/devices/system/cpu
echo "main: possible=$(cat $cpus/possible) present=$(cat $cpus/present)"
if in_host "{python} -m builder.cli load {outdir} --method segments --verbose"; then
    echo "main: load finished"
else
    echo "main: load failed"
    poweroff -f
fi
memory=/sys/devices/system/memory
echo "main: crash_hotplug cpu=$(cat $cpus/crash_hotplug) memory=$(cat $memory/crash_hotplug)"
blocks=$(ls -d /sys/devices/system/memory/memory* | wc -l)
echo "main: ready for hotplug"
waited=0
while [ ! -e /sys/devices/system/cpu/cpu1/online ] \\
        || [ "$(ls -d /sys/devices/system/memory/memory* | wc -l)" -le "$blocks" ]; do
    [ $waited -ge 300 ] && {{ echo "main: no hot-add seen"; poweroff -f; }}
    sleep 1
    waited=$((waited + 1))
done
echo 1 > /sys/devices/system/cpu/cpu1/online
for block in /sys/devices/system/memory/memory*; do
    [ "$(cat $block/state)" = online ] || echo online > $block/state
done
echo "main: online cpus $(cat /sys/devices/system/cpu/online)"
grep "System RAM" /proc/iomem | sed 's/^/main: iomem /'
taskset -c 1 sh -c 'echo "main: crashing pid $$" > /dev/kmsg; echo c > /proc/sysrq-trigger'
echo "main: still alive after sysrq crash"
"""


@dataclass
class HotAdd:
    """A stop condition that never stops: once the guest is ready, hot-add a vCPU and a DIMM."""

    socket: Path
    done: bool = False
    dimm: tuple[int, int] | None = None  # (address, size) QEMU gave the DIMM
    said: list[str] = field(default_factory=list)

    def __call__(self, console: str, idle: float) -> str | None:
        if self.done or "main: ready for hotplug" not in console:
            return None
        self.done = True
        try:
            self._add()
        except (OSError, RuntimeError) as error:
            return f"hot-add failed: {error}"
        return None

    def _add(self) -> None:
        qmp = Qmp(self.socket)
        slots = qmp.command("query-hotpluggable-cpus")
        assert isinstance(slots, list)
        (free,) = [slot for slot in slots if "qom-path" not in slot]
        qmp.command("device_add", driver=free["type"], id="cpu1", **free["props"])
        qmp.command("object-add", **{"qom-type": "memory-backend-ram", "id": "mem1",
                                     "size": DIMM_SIZE})  # fmt: skip
        qmp.command("device_add", driver="pc-dimm", id="dimm1", memdev="mem1")
        devices = qmp.command("query-memory-devices")
        assert isinstance(devices, list)
        data = devices[0]["data"]
        self.dimm = (int(data["addr"]), int(data["size"]))
        self.said.append(f"added {free['type']} {free['props']} and a DIMM at {data['addr']:#x}")


@dataclass(frozen=True)
class DumpHeader:
    """What the kdump-compressed file says of itself (makedumpfile's diskdump_mng.h)."""

    max_pfn: int  # one past the highest page frame /proc/vmcore described
    prstatus_pids: tuple[int, ...]  # pr_pid of each NT_PRSTATUS note, in note order


def read_dump_header(vmcore: Path) -> DumpHeader:
    """Parse the disk_dump_header and kdump_sub_header (header version 6+) of x86_64."""
    data = vmcore.read_bytes()
    assert data[:8] == b"KDUMP   ", data[:8]
    (version,) = struct.unpack_from("<i", data, 8)
    assert version >= 6, version
    # 8 signature + 4 version + 390 utsname, then a timeval at 408: block_size at 428.
    (block_size,) = struct.unpack_from("<i", data, 428)
    sub = block_size  # the sub header is the second block
    offset_note, size_note = struct.unpack_from("<QQ", data, sub + 48)
    (max_mapnr_64,) = struct.unpack_from("<Q", data, sub + 96)
    return DumpHeader(max_mapnr_64, _prstatus_pids(data[offset_note : offset_note + size_note]))


def _prstatus_pids(notes: bytes) -> tuple[int, ...]:
    pids: list[int] = []
    offset = 0
    while offset + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, offset)
        name_at = offset + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        name = notes[name_at : name_at + namesz].rstrip(b"\0")
        if name == b"CORE" and kind == 1:  # NT_PRSTATUS: pr_pid at byte 32 of elf_prstatus
            pids.append(struct.unpack_from("<i", notes, desc_at + 32)[0])
        offset = desc_at + (descsz + 3) // 4 * 4
    return tuple(pids)


@dataclass(frozen=True)
class Cycle:
    console: str
    files: list[Path]
    hot_add: HotAdd
    seconds: float


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> Cycle:
    """One boot: load, hot-add a vCPU and a DIMM, crash on the new CPU, dump."""
    missing = harness.missing_host_tools()
    assert not missing, f"install {missing} (./bootstrap test does)"
    tmp = tmp_path_factory.mktemp("hotplug")
    outdir = tmp / "out"
    built = run_cli(str(TRIXIE_RECIPE), "-o", str(outdir), "--json")
    assert built.returncode == 0, built.stderr
    kernel = str(json.loads(built.stdout)["kernel"])
    body = BODY.format(python=shlex.quote(sys.executable), outdir=shlex.quote(str(outdir)))
    init = harness.HOSTROOT_INIT.format(tag=harness.HOSTROOT_TAG, repo=REPO, body=body)
    initrd = tmp / "main-initrd.img"
    initrd.write_bytes(
        harness.ninep_initrd(kernel, init, ("busybox-static", "base-files"), release="trixie")
    )
    disk = tmp / "dump.img"
    harness.make_dump_disk(disk, size_mib=2048)
    socket = tmp / "qmp.sock"
    hot_add = HotAdd(socket)
    boot = harness.run_qemu(
        outdir / "vmlinuz",
        initrd,
        "console=ttyS0 crashkernel=192M no_timer_check",
        disk,
        memory="1G,slots=2,maxmem=2G",
        log=tmp / "console.log",
        share_host_root=True,
        timeout=900,
        stop=hot_add,
        extra=(*HOTPLUG_CPU_OPTIONS, *qmp_option(socket)),
    )
    assert boot.returncode == 0, f"{boot.stopped}\n{boot.console[-4000:]}"
    return Cycle(boot.console, harness.extract_disk(disk, tmp / "disk"), hot_add, boot.seconds)


def test_the_load_asks_the_kernel_to_rewrite_the_header(cycle: Cycle) -> None:
    console = cycle.console
    # The kernel keeps a logical CPU for the absent one (the VMware detection above).
    assert "Allowing 1 present CPUs plus 1 hotplug CPUs" in console, console[-4000:]
    assert "main: possible=0-1 present=0" in console, console[-4000:]
    assert "main: load finished" in console, console[-4000:]
    # The flags: KEXEC_ON_CRASH | KEXEC_UPDATE_ELFCOREHDR | KEXEC_ARCH_X86_64.
    assert "flags 0x3e0005" in console, console[-4000:]
    assert "kdump-build: the kernel rewrites the ELF core header" in console, console[-4000:]
    # sysfs says the loaded image is one the kernel rewrites.
    assert "main: crash_hotplug cpu=1 memory=1" in console, console[-4000:]
    assert "main: online cpus 0-1" in console, console[-4000:]


def test_the_dump_holds_the_new_cpus_crash_notes(cycle: Cycle, tmp_path: Path) -> None:
    assert "kdump: dump saved to" in cycle.console, cycle.console[-4000:]
    (vmcore,) = [path for path in cycle.files if path.name == "vmcore"]
    log = harness.dump_dmesg(vmcore, tmp_path / "dmesg.txt")
    assert "sysrq triggered crash" in log
    crashed = re.search(r"CPU: 1 (?:UID: \d+ )?PID: (\d+) ", log)
    assert crashed is not None, "the panic was not on CPU 1:\n" + log[-3000:]
    pid = int(crashed.group(1))
    # The shell's pid goes to the kernel's log, not to the tty: a tty write still in
    # the serial driver's buffer is lost when CPU 1 panics (CI 2026-12-07 lost it).
    said = re.search(r"main: crashing pid (\d+)", log)
    assert said is not None, "the crashing shell's pid is not in the dump's log:\n" + log[-3000:]
    assert int(said.group(1)) == pid, f"CPU 1 panicked in pid {pid}, not the crashing shell"
    # CPU 1's registers at the crash: a PRSTATUS note whose pid is the crashing shell's.
    pids = read_dump_header(vmcore).prstatus_pids
    assert pid in pids, f"no crash notes of CPU 1 (pid {pid}) in the dump: PRSTATUS pids {pids}"


def test_the_dump_covers_the_new_memory(cycle: Cycle) -> None:
    assert cycle.hot_add.dimm is not None, cycle.hot_add.said
    start, size = cycle.hot_add.dimm
    assert f"{start:x}-{start + size - 1:x} : System RAM" in cycle.console, cycle.console[-3000:]
    (vmcore,) = [path for path in cycle.files if path.name == "vmcore"]
    max_pfn = read_dump_header(vmcore).max_pfn
    assert max_pfn * PAGE >= start + size, (
        f"the dump ends at {max_pfn * PAGE:#x}, the DIMM at {start:#x}-{start + size:#x}"
    )
