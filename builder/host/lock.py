"""One run at a time arms or changes this machine: enable, disable, boot and the hooks.

Without it, `enable` removed a capture a kernel hook had just built, and a
boot-time rebuild could race a hook's build of the same directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from builder.errors import HostError
from builder.host.paths import HostPaths
from builder.locks import locked_file


@contextmanager
def host_lock(paths: HostPaths) -> Iterator[None]:
    """Hold the machine's lock (`HostPaths.lock`), waiting for the run that holds it."""
    try:
        with locked_file(paths.lock):
            yield
    except OSError as error:
        raise HostError(f"{paths.lock}: cannot lock it ({error.strerror})") from None
