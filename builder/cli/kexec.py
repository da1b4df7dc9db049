"""Commands of the kexec product: layout, capture-sysfs, load, unload, status."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from builder.cli.compat import Argument, Option
from builder.kexecfs import KexecFile

if TYPE_CHECKING:
    from builder.arch import Arch
    from builder.host.report import HostStatus
    from builder.kexec.layout.core import Layout
    from builder.kexec.layout.inputs import BuildOutputs
    from builder.kexec.memmap import Range
    from builder.kexec.method import FileLoadProbe, LoadMethod, MethodChoice
    from builder.kexec.state import LoadRecord
    from builder.kexec.syscalls import KexecStatus

# `status` on a machine where no crash kernel is loaded: not an error, not ready.
NOT_READY_EXIT_CODE = 4

OutdirArgument = Annotated[Path, Argument(help="A build's output directory (vmlinuz, initrd.img).")]
ArchOption = Annotated[
    str | None,
    Option("--arch", help="Target architecture [the build's, from its manifest.json]."),
]
BackupOption = Annotated[
    bool | None,
    Option(
        "--backup/--no-backup",
        help="Copy the low 640 KiB first (kernels before v5.5) "
        "[default: the recipe's kernel.backup_region].",
    ),
]


ShowOption = Annotated[
    bool, Option("--show", help="Plan from this system and print the segments; load nothing.")
]
VerboseOption = Annotated[
    bool, Option("--verbose", help="Print the planned segments, then load them.")
]


def _arch_override(arch: str | None) -> Arch | None:
    # Imported here: at start-up, builder.arch would cost ~5.0 ms.
    from builder.arch import parse_arch

    return parse_arch(arch, "--arch") if arch is not None else None


def _print_layout(layout: Layout, json_output: bool) -> None:
    # Imported here: at start-up, builder.kexec.layout.document would cost ~376 ms.
    from builder.kexec.layout.core import describe_layout
    from builder.kexec.layout.document import layout_json

    if json_output:
        typer.echo(json.dumps(layout_json(layout), indent=2))
        return
    for line in describe_layout(layout):
        typer.echo(line)
    typer.echo(f"cmdline {layout.details.cmdline}")


def layout(
    outdir: OutdirArgument,
    iomem: Annotated[Path, Option("--iomem", help="A captured /proc/iomem.")],
    sysfs: Annotated[
        Path | None,
        Option(
            "--sysfs",
            help="A directory from `kdump-build capture-sysfs` (crash notes, "
            "vmcoreinfo, kcore headers, the booted device tree); without it the ELF "
            "core header has no notes.",
        ),
    ] = None,
    arch: ArchOption = None,
    backup: BackupOption = None,
    json_output: Annotated[bool, Option("--json", help="Print layout.json.")] = False,
) -> None:
    """Compute the kexec segment layout offline; write layout.json and segments/ into OUTDIR."""
    # Imported here: at start-up, builder.kexec.layout.document would cost ~376 ms.
    from builder.kexec.hotplug import read_crash_hotplug
    from builder.kexec.layout import plan_layout
    from builder.kexec.layout.document import write_layout
    from builder.kexec.layout.inputs import (
        read_build_outputs,
        read_crash_cma,
        read_crash_info_for,
        read_firmware,
        read_iomem,
    )

    outputs = read_build_outputs(outdir)
    target = outputs.target_arch(_arch_override(arch))
    memory = read_iomem(iomem)
    if sysfs is not None:
        memory = read_crash_cma(sysfs, memory)
    info = read_crash_info_for(sysfs, memory, target) if sysfs is not None else None
    firmware = read_firmware(sysfs) if sysfs is not None else None
    hotplug = read_crash_hotplug(sysfs, target) if sysfs is not None else None
    planned = plan_layout(outputs, memory, info, arch=target, backup=backup, firmware=firmware,
                          crash_hotplug=hotplug)  # fmt: skip
    written = write_layout(planned, outdir)
    _print_layout(planned, json_output)
    if not json_output:
        typer.echo(f"wrote {written} and {outdir / 'segments'}/")


def capture_sysfs(
    destination: Annotated[Path, Argument(help="Directory to create.")],
) -> None:
    """Save this system's crash notes, vmcoreinfo, kcore headers, device tree and iomem.

    For `layout --sysfs DIR --iomem DIR/proc/iomem` on another machine.
    """
    # Imported here: at start-up, builder.kexec.crashinfo would cost ~33 ms.
    from builder.kexec.crashinfo import capture_crash_info

    capture_crash_info(Path("/"), destination)
    typer.echo(f"captured into {destination}/ (use --iomem {destination}/proc/iomem)")


def _choose(method: str, *, say: bool = True) -> MethodChoice:
    """The method to use for `method` on this kernel; says why when `auto` chose."""
    # Imported here: at start-up, builder.kexec.syscalls would cost ~65 ms.
    from builder.arch import host_arch
    from builder.kexec.method import LoadMethod, choose_method, parse_method
    from builder.kexec.syscalls import lockdown_mode, probe_file_load

    requested = parse_method(method)
    probe = probe_file_load(host_arch()) if requested is LoadMethod.AUTO else None
    choice = choose_method(requested, lockdown_mode(), *([probe] if probe else []))
    if say:
        _say_why(choice)
    return choice


def _say_why(choice: MethodChoice) -> None:
    if choice.reason is not None:
        typer.echo(f"kdump-build: {choice.reason}", err=True)


def load(
    outdir: OutdirArgument,
    method: Annotated[
        str,
        Option(
            "--method",
            help="segments (kexec_load, our purgatory), file "
            "(kexec_file_load) or auto (file under lockdown).",
        ),
    ] = "auto",
    arch: ArchOption = None,
    backup: BackupOption = None,
    print_kexec_command: Annotated[
        bool,
        Option("--print-kexec-command", help="Print the kexec-tools equivalent; load nothing."),
    ] = False,
    show: ShowOption = False,
    verbose: VerboseOption = False,
    testing_corrupt_segment: Annotated[
        str | None,
        Option(
            "--testing-corrupt-segment",
            hidden=True,
            help="TEST ONLY: flip a byte of this segment after the digest.",
        ),
    ] = None,
) -> None:
    """Load the capture kernel from OUTDIR as this system's crash kernel."""
    # Imported here: at start-up, builder.kexec.layout.inputs would cost ~104 ms.
    from builder.host.readiness import check_ready
    from builder.kexec.layout.inputs import read_build_outputs
    from builder.kexec.method import LoadMethod, kexec_tools_command, parse_method
    from builder.kexec.syscalls import require_this_machine

    outputs = read_build_outputs(outdir)
    if print_kexec_command:
        typer.echo(kexec_tools_command(outputs.kernel_path, outputs.initrd_path,
                                       outputs.cmdline, parse_method(method)))  # fmt: skip
        return
    target = outputs.target_arch(_arch_override(arch))
    require_this_machine(target)  # before reading this machine's sysfs for another's layout
    choice = _choose(method, say=False)
    # What keeps the load from working, in plain words, before any syscall fails.
    check_ready(outdir, segments=choice.method is LoadMethod.SEGMENTS)
    _say_why(choice)
    if show:  # a dry run: the plan, nothing loaded and nothing recorded
        _show_plan(outputs, target, backup, choice.method)
        return
    if choice.method is LoadMethod.FILE:
        record = _load_file(outputs, target)
    else:
        record = _load_segments(outputs, target, backup, verbose, testing_corrupt_segment)
    _record(replace(record, reason=choice.reason))


def _show_plan(outputs: BuildOutputs, arch: Arch, backup: bool | None,
               method: LoadMethod) -> None:  # fmt: skip
    # Imported here: at start-up, builder.kexec.layout.core would cost ~331 ms.
    from builder.kexec.layout.core import check_layout
    from builder.kexec.method import LoadMethod

    if method is LoadMethod.FILE:
        typer.echo(f"would load {outputs.kernel_path} and {outputs.initrd_path} with "
                   f"kexec_file_load (the kernel places them); nothing loaded")  # fmt: skip
        return
    planned = _live_plan(outputs, arch, backup)
    check_layout(planned)
    _print_layout(planned, False)
    typer.echo("nothing loaded (--show)")


def _live_plan(outputs: BuildOutputs, arch: Arch, backup: bool | None) -> Layout:
    """The segments for this running system (its iomem, crash notes, device tree)."""
    # Imported here: at start-up, builder.kexec.layout.inputs would cost ~104 ms.
    from builder.kexec.hotplug import hotplug_notice, read_crash_hotplug
    from builder.kexec.layout import plan_layout
    from builder.kexec.layout.devicetree import fresh_seeds
    from builder.kexec.layout.inputs import (
        read_crash_cma,
        read_crash_info_for,
        read_firmware,
        read_iomem,
    )

    memory = read_crash_cma(Path("/"), read_iomem(Path("/proc/iomem")))
    info = read_crash_info_for(Path("/"), memory, arch)
    firmware = read_firmware(Path("/"))
    # Where the kernel rewrites the ELF core header on CPU/memory hotplug, let it.
    hotplug = read_crash_hotplug(Path("/"), arch)
    notice = hotplug_notice(Path("/"), hotplug)
    if notice is not None:
        typer.echo(f"kdump-build: {notice}", err=True)
    return plan_layout(outputs, memory, info, arch=arch, backup=backup, firmware=firmware,
                       seeds=fresh_seeds(), crash_hotplug=hotplug)  # fmt: skip


def _load_file(outputs: BuildOutputs, arch: Arch) -> LoadRecord:
    # Imported here: at start-up, builder.kexec.syscalls would cost ~65 ms.
    from builder.kexec.method import LoadMethod
    from builder.kexec.state import LoadRecord
    from builder.kexec.syscalls import kexec_file_load

    kexec_file_load(arch, outputs.kernel_path, outputs.initrd_path, outputs.cmdline)
    typer.echo(f"loaded {outputs.kernel_path} as crash kernel with kexec_file_load")
    return LoadRecord(LoadMethod.FILE, outputs.outdir.absolute())


def _load_segments(outputs: BuildOutputs, arch: Arch, backup: bool | None, verbose: bool,
                   corrupt: str | None) -> LoadRecord:  # fmt: skip
    # Imported here: at start-up, builder.kexec.layout.core would cost ~331 ms.
    from builder.kexec.layout.core import check_layout, corrupt_segment_for_testing
    from builder.kexec.method import LoadMethod
    from builder.kexec.state import LoadRecord
    from builder.kexec.syscalls import kexec_load

    planned = _live_plan(outputs, arch, backup)
    if corrupt is not None:
        planned = corrupt_segment_for_testing(planned, corrupt)
        typer.echo(f"kdump-build: TESTING: corrupted segment {corrupt!r}", err=True)
    check_layout(planned)
    if verbose:
        _print_layout(planned, False)
    kexec_load(planned)
    typer.echo(f"loaded {len(planned.segments)} segments with kexec_load, entry {planned.entry:#x}")
    names = tuple(segment.name for segment in planned.segments)
    return LoadRecord(LoadMethod.SEGMENTS, outputs.outdir.absolute(), planned.entry, names)


def _record(record: LoadRecord) -> None:
    """Record the load for `status`; a warning, not an error, if /run is not writable."""
    # Imported here: at start-up, builder.kexec.state would cost ~5.0 ms.
    from builder.errors import OutputError
    from builder.kexec.state import record_load

    try:
        record_load(record)
    except OutputError as error:
        typer.echo(f"kdump-build: warning: {error}", err=True)


def unload(
    method: Annotated[str, Option("--method", help="segments, file or auto.")] = "auto",
) -> None:
    """Unload this system's crash kernel."""
    # Imported here: at start-up, builder.kexec.syscalls would cost ~65 ms.
    from builder.arch import host_arch
    from builder.kexec.state import forget_load
    from builder.kexec.syscalls import unload as kexec_unload

    kexec_unload(host_arch(), method=_choose(method).method)
    forget_load()
    typer.echo("crash kernel unloaded")


LOADED_TEXT = {
    True: "yes",
    False: "no",
    None: f"no (no {KexecFile.CRASH_LOADED.described()})",
}


def status(
    json_output: Annotated[bool, Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether a crash kernel is loaded, the crash region, how it was loaded and why, this
    kernel's capture, whether the reservation holds it, and what keeps a load from working."""
    # Imported here: at start-up, builder.host.report would cost ~456 ms.
    from builder.arch import host_arch
    from builder.host.report import host_status
    from builder.kexec.state import recorded_method, recorded_reason
    from builder.kexec.syscalls import crash_region, kexec_status, probe_file_load

    current = kexec_status()
    region = crash_region()
    method: LoadMethod | None = recorded_method() if current.loaded else None
    reason = recorded_reason() if current.loaded else None
    probe = probe_file_load(host_arch())
    auto_method, auto_reason = _auto_choice(current, probe)
    host = host_status(current.loaded)
    if json_output:
        summary = {
            "loaded": current.loaded,
            "crash_region": None if region is None else str(region),
            "crash_size": current.crash_size,
            "method": method,
            "reason": reason,
            "lockdown": current.lockdown,
            "kexec_file_load": probe.state,
            "auto": {"method": auto_method, "reason": auto_reason},
            **host.to_json(),
        }
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_status(current, region, method, reason, probe, (auto_method, auto_reason), host)
    if current.loaded is not True:
        raise typer.Exit(NOT_READY_EXIT_CODE)


def _print_status(
    current: KexecStatus,
    region: Range | None,
    method: LoadMethod | None,
    reason: str | None,
    probe: FileLoadProbe,
    auto: tuple[LoadMethod | None, str],
    host: HostStatus,
) -> None:
    auto_method, auto_reason = auto
    typer.echo(f"crash kernel loaded: {LOADED_TEXT[current.loaded]}")
    typer.echo(f"crash region: {region or 'none'} ({current.crash_size or 0} bytes)")
    typer.echo(f"method: {method or 'unknown'}" + (f" (auto: {reason})" if reason else ""))
    typer.echo(f"lockdown: {current.lockdown or 'unknown'}")
    typer.echo(f"{probe.describe()}")
    typer.echo(f"--method auto would use: {auto_method or 'nothing'} ({auto_reason})")
    for line in host.lines():
        typer.echo(line)


def _auto_choice(current: KexecStatus, probe: FileLoadProbe) -> tuple[LoadMethod | None, str]:
    """What `load --method auto` would do on this kernel, and why (None: nothing can load)."""
    # Imported here: at start-up, builder.kexec.method would cost ~3.4 ms.
    from builder.errors import LoadError
    from builder.kexec.method import LoadMethod, choose_method

    if current.loaded is None:
        return None, "this kernel has no kexec support for crash dumps"
    try:
        choice = choose_method(LoadMethod.AUTO, current.lockdown, probe)
    except LoadError as error:
        return None, str(error)
    return choice.method, choice.reason or ""
