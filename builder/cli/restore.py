"""The command that turns a flattened dump back into a vmcore: restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from builder.cli.compat import Argument


def restore(
    source: Annotated[
        Path, Argument(help="A flattened dump: vmcore.flat, or the raw dump device.")
    ],
    output: Annotated[Path, Argument(help="The vmcore to write (must not exist).")],
) -> None:
    """Turn makedumpfile's flattened stream (raw and ssh targets) back into a vmcore."""
    # Imported here: at start-up, builder.binfmt.flat would cost ~9.6 ms.
    from builder.binfmt.flat import restore_file

    result = restore_file(source, output)
    typer.echo(
        f"restored {output}: {result.size:,} bytes from {result.blocks} blocks "
        f"({result.stream_length:,} bytes of stream)"
    )
