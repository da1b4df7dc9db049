"""Commands that read images: inspect (a kernel or an initrd), diff (two initrds)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from builder.cli.compat import Argument, Option

if TYPE_CHECKING:
    from builder.binfmt.cpio import ArchiveEntry
    from builder.image.diff import MemberChange

KERNEL_FIELDS = ("arch", "format", "version", "relocatable", "alignment", "min_address",
                 "memory_size", "entry", "banner")  # fmt: skip


def _read_file(path: Path) -> bytes:
    """The bytes of an image to read; an empty file is nothing to describe."""
    # Imported here: at start-up, builder.errors would cost ~0.7 ms.
    from builder.errors import InitrdError

    try:
        data = path.read_bytes()
    except OSError as error:
        raise InitrdError(f"{path}: {error.strerror}") from None
    if not data:
        raise InitrdError(f"{path}: empty file (neither an initrd nor a kernel image)")
    return data


def inspect(
    path: Annotated[Path, Argument(help="A kernel image, an initrd or a device tree.")],
    json_output: Annotated[bool, Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a kernel image or a device tree (DTB), or list an initrd's members like lsinitrd."""
    # Imported here: at start-up, builder.binfmt.kernelimg would cost ~95 ms.
    from builder.binfmt.cpio import NEWC_MAGICS, read_initrd
    from builder.binfmt.fdt import is_fdt
    from builder.binfmt.kernelimg import describe, parse_kernel_image
    from builder.compression import detect
    from builder.errors import ImageError, InitrdError

    data = _read_file(path)
    if is_fdt(data):
        _print_device_tree(data, path, json_output)
        return
    if data.startswith(NEWC_MAGICS):
        _print_initrd(read_initrd(data, str(path)), len(data), json_output)
        return
    try:
        image = parse_kernel_image(data, str(path))
    except ImageError as kernel_error:
        # A compressed initrd starts like a compressed kernel: try it as one.
        try:
            entries = read_initrd(data, str(path))
        except InitrdError as initrd_error:
            if detect(data) is None:
                raise kernel_error from None
            raise InitrdError(
                f"{path}: neither an initrd ({str(initrd_error).removeprefix(f'{path}: ')}) "
                f"nor a kernel image ({str(kernel_error).removeprefix(f'{path}: ')})"
            ) from None
        _print_initrd(entries, len(data), json_output)
        return
    _print_kernel(describe(image), json_output)


def _print_kernel(description: dict[str, object], json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(description, indent=2))
        return
    for key in KERNEL_FIELDS:
        value = description.get(key)
        shown = f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) else value
        typer.echo(f"{key:<12} {shown}")


def _print_device_tree(data: bytes, path: Path, json_output: bool) -> None:
    """/chosen, the memory nodes and the reserved ranges: what a kernel booted with it gets."""
    # Imported here: at start-up, builder.kexec.layout.devicetree would cost ~208 ms.
    from builder.binfmt.fdt import parse_fdt
    from builder.kexec.layout.devicetree import describe_device_tree

    summary = describe_device_tree(parse_fdt(data, str(path)))
    if json_output:
        typer.echo(json.dumps(summary.to_json(), indent=2))
        return
    address_cells, size_cells = summary.root_cells
    typer.echo(f"device tree {path} (#address-cells {address_cells}, #size-cells {size_cells})")
    typer.echo("/chosen")
    for name, value in summary.chosen:
        typer.echo(f"  {name:<26} {_shown(value)}")
    typer.echo("memory")
    for node, ranges in summary.memory:
        typer.echo(f"  {node:<26} {_shown(ranges)}")
    typer.echo("reserved")
    for source, piece in summary.reserved:
        typer.echo(f"  {source:<26} {_shown((piece,))}")


def _shown(value: object) -> str:
    """Ranges as first-last (size), numbers in hex, the rest as it is."""
    # Imported here: at start-up, builder.kexec.memmap would cost ~8.4 ms.
    from builder.kexec.memmap import Range
    from builder.units import MiB, describe_size

    def size(count: int) -> str:
        return describe_size(count) if count >= MiB else f"{count} bytes"

    if isinstance(value, int):
        return f"{value:#x}"
    if isinstance(value, tuple) and all(isinstance(piece, Range) for piece in value):
        return ", ".join(
            f"{piece.start:#x}-{piece.last:#x} ({size(piece.size)})" for piece in value
        )
    return str(value)


def _entry_json(entry: ArchiveEntry) -> dict[str, object]:
    device = stat.S_ISCHR(entry.mode) or stat.S_ISBLK(entry.mode)
    return {
        "path": entry.path,
        "mode": f"{entry.mode:06o}",
        "size": entry.size,
        **({"target": entry.target} if entry.target else {}),
        **({"rdev": list(entry.rdev)} if device else {}),
        "segment": entry.segment,
    }


def _print_initrd(entries: list[ArchiveEntry], size: int, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps([_entry_json(entry) for entry in entries], indent=2))
        return
    for entry in entries:
        suffix = f" -> {entry.target}" if entry.target else ""
        typer.echo(f"{stat.filemode(entry.mode)} {entry.size:>10} {entry.path}{suffix}")
    typer.echo(f"{len(entries)} members, {size:,} bytes", err=True)


def _read_initrd_file(path: Path) -> list[ArchiveEntry]:
    # Imported here: at start-up, builder.binfmt.cpio would cost ~43 ms.
    from builder.binfmt.cpio import read_initrd

    return read_initrd(_read_file(path), str(path))


def diff(
    before: Annotated[Path, Argument(help="The first initrd.")],
    after: Annotated[Path, Argument(help="The second initrd.")],
    json_output: Annotated[bool, Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show members added (+), removed (-) and changed (~) between two initrds."""
    # Imported here: at start-up, builder.image.diff would cost ~71 ms.
    from builder.image.diff import ChangeStatus, diff_initrds

    marks = {ChangeStatus.ADDED: "+", ChangeStatus.REMOVED: "-", ChangeStatus.CHANGED: "~"}
    changes = diff_initrds(_read_initrd_file(before), _read_initrd_file(after))
    if json_output:
        typer.echo(json.dumps([_change_json(change) for change in changes], indent=2))
        return
    for change in changes:
        details = ", ".join(change.details())
        line = f"{marks[change.status]} {change.path}"
        typer.echo(line + (f" ({details})" if details else ""))
    counts = {status: sum(c.status is status for c in changes) for status in marks}
    typer.echo(", ".join(f"{counts[status]} {status}" for status in marks), err=True)


def _side_json(entry: ArchiveEntry | None) -> dict[str, object] | None:
    # Imported here: at start-up, builder.image.initrd would cost ~25 ms.
    from builder.image.initrd import sha256

    if entry is None:
        return None
    return {
        "mode": f"{entry.mode:06o}",
        "size": entry.size,
        "sha256": sha256(entry.data),
        **({"target": entry.target} if entry.target else {}),
    }


def _change_json(change: MemberChange) -> dict[str, object]:
    return {
        "path": change.path,
        "status": change.status,
        "before": _side_json(change.before),
        "after": _side_json(change.after),
        "details": change.details(),
    }
