"""How a long step of a build reports its progress, under one name.

Fetching packages, reading them and compressing the initrd report alike
(the pipeline turns each report into a `Tick` of its step, and the CLI
shows them with the same bars, builder/cli/progress.py).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ByteProgress"]

# Bytes done so far, bytes in all, what is going on.
ByteProgress = Callable[[int, int, str], None]
