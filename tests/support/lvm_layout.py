"""Where a linear LVM logical volume lies in a disk image, read on the host (no device-mapper).

Independent of kdump-build's own code (which only asks lvm2): the MBR's partition
entry, the PV label ("LABELONE", "LVM2 001"), the PV header's metadata area, its
header and first raw location, and the volume group's text metadata, parsed here.
A logical volume of one linear segment (one stripe) is a contiguous byte range
of its physical volume: pe_start + first extent * extent_size, in 512-byte sectors.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SECTOR = 512
LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
LABEL_SCAN_SECTORS = 4  # lvm2 writes its label in one of the first four sectors
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512  # the circular text buffer starts after it
MBR_ENTRIES = 446

Value = str | int | list["Value"] | dict[str, "Value"]


class LayoutError(Exception):
    """The image is not what the reader expects; the message says where."""


@dataclass(frozen=True)
class LogicalVolume:
    uuid: str
    offset: int  # bytes from the start of the disk image
    size: int


def partition_start(disk: BinaryIO, number: int) -> int:
    """Byte offset of MBR primary partition `number` (1-4)."""
    disk.seek(MBR_ENTRIES + 16 * (number - 1))
    entry = disk.read(16)
    first_sector: int = struct.unpack_from("<I", entry, 8)[0]
    if entry[4] == 0 or first_sector == 0:
        raise LayoutError(f"MBR partition {number} is empty")
    return first_sector * SECTOR


def _label(disk: BinaryIO, start: int) -> tuple[str, int]:
    """The PV's UUID and the byte offset (from the PV's start) of its first metadata area."""
    disk.seek(start)
    head = disk.read(LABEL_SCAN_SECTORS * SECTOR)
    for sector in range(LABEL_SCAN_SECTORS):
        label = head[sector * SECTOR : (sector + 1) * SECTOR]
        if label[:8] == LABEL_ID and label[24:32] == LABEL_TYPE:
            break
    else:
        raise LayoutError(f"no LVM2 PV label in the 4 sectors at byte {start}")
    (contents,) = struct.unpack_from("<I", label, 20)
    header = label[contents:]
    uuid = header[:32].decode()
    # After the UUID and the device size: data areas, then metadata areas, as
    # (offset, size) pairs of u64, each list ended by a pair of zeros.
    position, lists = 40, []
    for _ in range(2):
        areas = []
        while True:
            offset, size = struct.unpack_from("<QQ", header, position)
            position += 16
            if offset == 0 and size == 0:
                break
            areas.append(offset)
        lists.append(areas)
    if not lists[1]:
        raise LayoutError(f"PV {uuid} at byte {start} has no metadata area")
    return uuid, lists[1][0]


def _metadata_text(disk: BinaryIO, area: int) -> str:
    """The committed text metadata of the metadata area at byte `area` of the image."""
    disk.seek(area)
    header = disk.read(MDA_HEADER_SIZE)
    if header[4:20] != MDA_MAGIC:
        raise LayoutError(f"no LVM2 metadata header at byte {area}")
    (area_size,) = struct.unpack_from("<Q", header, 32)
    offset, size = struct.unpack_from("<QQ", header, 40)
    if size == 0:
        raise LayoutError(f"metadata area at byte {area} holds no metadata")
    disk.seek(area + offset)
    first = min(size, area_size - offset)
    text = disk.read(first)
    if first < size:  # the buffer wrapped round to just after the header
        disk.seek(area + MDA_HEADER_SIZE)
        text += disk.read(size - first)
    return text.rstrip(b"\0").decode()


# A token (a string, a word or number, punctuation), or a comment, which runs to the end
# of its line and may end the text (lvm2 ends its metadata with `creation_time = N\t# date`),
# or a stray character.
TOKEN = re.compile(r'(?P<token>"(?:[^"\\]|\\.)*"|[-\w.+]+|[{}\[\]=,])|#[^\n]*|(?P<stray>\S)')


def parse_metadata(text: str) -> dict[str, Value]:
    """lvm2's text format: sections `name { ... }`, `key = value`, lists `[a, b]`.

    >>> parse_metadata('vg {\\nid = "x"\\n# a note\\nlvs {\\nroot {\\nstripes = ["pv0", 0]\\n}}}')
    {'vg': {'id': 'x', 'lvs': {'root': {'stripes': ['pv0', 0]}}}}
    """
    tokens: list[str] = []
    for match in TOKEN.finditer(text):
        if match["stray"]:
            raise LayoutError(
                f"metadata: unexpected {match['stray']!r} at character {match.start()}"
            )
        if match["token"]:
            tokens.append(match["token"])
    tokens.reverse()
    result = _section(tokens)
    if tokens:
        raise LayoutError(f"metadata: unexpected {tokens[-1]!r}")
    return result


def _section(tokens: list[str]) -> dict[str, Value]:
    entries: dict[str, Value] = {}
    while tokens and tokens[-1] != "}":
        name = tokens.pop()
        following = tokens.pop() if tokens else ""
        if following == "{":
            entries[name] = _section(tokens)
            if not tokens or tokens.pop() != "}":
                raise LayoutError(f"metadata: section {name!r} not closed")
        elif following == "=":
            entries[name] = _value(tokens)
        else:
            raise LayoutError(f"metadata: {following!r} after {name!r}")
    return entries


def _value(tokens: list[str]) -> Value:
    token = tokens.pop()
    if token == "[":
        items: list[Value] = []
        while tokens[-1] != "]":
            items.append(_value(tokens))
            if tokens[-1] == ",":
                tokens.pop()
        tokens.pop()
        return items
    if token.startswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return int(token)


def _dashed(uuid: str) -> str:
    """lvm2's printed form of a 32-character UUID: groups of 6-4-4-4-4-4-6."""
    groups, start = [], 0
    for length in (6, 4, 4, 4, 4, 4, 6):
        groups.append(uuid[start : start + length])
        start += length
    return "-".join(groups)


def _section_of(parent: Value, name: str) -> dict[str, Value]:
    if not isinstance(parent, dict) or not isinstance(parent.get(name), dict):
        raise LayoutError(f"metadata: no section {name!r}")
    section = parent[name]
    assert isinstance(section, dict)
    return section


def logical_volume(image: Path, partition: int, group: str, name: str) -> LogicalVolume:
    """The byte range of linear LV `group/name` whose PV is MBR partition `partition`."""
    with open(image, "rb") as disk:
        start = partition_start(disk, partition)
        pv_uuid, area = _label(disk, start)
        metadata = parse_metadata(_metadata_text(disk, start + area))
    vg = _section_of(metadata, group)
    lv = _section_of(_section_of(vg, "logical_volumes"), name)
    segment = _section_of(lv, "segment1")
    stripes = segment.get("stripes")
    linear = isinstance(stripes, list) and len(stripes) == 2
    if lv.get("segment_count") != 1 or segment.get("type") != "striped" or not linear \
            or segment.get("start_extent") != 0:  # fmt: skip
        raise LayoutError(f"{group}/{name} is not one linear segment: {lv}")
    assert isinstance(stripes, list)
    pv_name, first_extent = stripes
    pv = _section_of(_section_of(vg, "physical_volumes"), str(pv_name))
    if str(pv.get("id", "")).replace("-", "") != pv_uuid:
        raise LayoutError(f"{group}/{name} lies on {pv.get('id')}, partition {partition} is "
                          f"PV {_dashed(pv_uuid)}")  # fmt: skip
    extent = _number(vg, "extent_size")
    first = _number(pv, "pe_start") + _number({"first": first_extent}, "first") * extent
    return LogicalVolume(str(lv["id"]), start + first * SECTOR,
                         _number(segment, "extent_count") * extent * SECTOR)  # fmt: skip


def _number(section: dict[str, Value], key: str) -> int:
    value = section.get(key)
    if not isinstance(value, int):
        raise LayoutError(f"metadata: {key} is {value!r}, not a number")
    return value
