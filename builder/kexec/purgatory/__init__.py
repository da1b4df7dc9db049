"""kdump-build's own purgatory: sources, the prebuilt objects, and their loader.

`loader` relocates an ET_REL object to a load address and patches symbols;
`regions` computes what the purgatory verifies; `x86_64` ties them to the
shipped x86_64 object.
"""

from builder.kexec.purgatory.loader import (
    LoadedPurgatory,
    PurgatorySymbol,
    RelocationRule,
    RelocationTable,
    load_purgatory,
)
from builder.kexec.purgatory.regions import MAX_REGIONS, Segment, regions_digest, regions_table
from builder.kexec.purgatory.x86_64 import (
    BackupRegion,
    build_x86_64_purgatory,
    load_x86_64_purgatory,
    patch_x86_64_purgatory,
)

__all__ = [
    "MAX_REGIONS",
    "BackupRegion",
    "LoadedPurgatory",
    "PurgatorySymbol",
    "RelocationRule",
    "RelocationTable",
    "Segment",
    "build_x86_64_purgatory",
    "load_purgatory",
    "load_x86_64_purgatory",
    "patch_x86_64_purgatory",
    "regions_digest",
    "regions_table",
]
