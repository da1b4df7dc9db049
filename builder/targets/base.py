"""What several dump targets share: the `dump.path` key.

The contract itself (`TargetKind` and the records it returns) is part of the
recipe schema, in `builder.recipe.dump`.
"""

from __future__ import annotations

from builder.recipe.parsers import Setting, absolute_path

# The directory each dump goes below; shared by the targets that write files.
PATH = Setting(
    "dump.path",
    absolute_path,
    "/",
    "Directory inside the dump filesystem, NFS export or ssh host; each dump gets "
    "a directory below it named after the crash time (network targets: "
    "`<host>-<time>`).",
)
