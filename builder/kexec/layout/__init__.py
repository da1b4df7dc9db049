"""kexec segment layouts: what bytes go where in the crash region, as data.

- core.py: `Layout`, `KexecSegment`, `LayoutInputs` and the kernel's rules
  (`check_layout`), shared by every architecture;
- `plan_layout` (here): the package's entry point, a build's outputs and a
  memory map in, the checked `Layout` of the build's architecture out;
- one planner per architecture, in the module named after it (`x86_64.py`),
  found through `planner`: adding an architecture adds its module, nothing here;
- document.py: layout.json and the segment blobs, written beside the build;
- inputs.py: reading a build's output directory, a memory map and sysfs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING

from builder.arch import Arch
from builder.errors import LayoutError
from builder.kexec.crashinfo import CrashInfo
from builder.kexec.hotplug import CrashHotplug
from builder.kexec.layout.core import Firmware, Layout, LayoutInputs, LayoutOptions, Planner
from builder.kexec.layout.devicetree import BootSeeds
from builder.kexec.memmap import Kind, MemoryMap

if TYPE_CHECKING:
    from builder.kexec.layout.inputs import BuildOutputs

__all__ = ["plan_layout", "planner", "planners"]


@functools.cache
def planners() -> Mapping[Arch, Planner]:
    """Every architecture's planner: the `plan` of the layout module named after it.

    Imported when first asked for, as the planners pull in the purgatory.

    >>> all(isinstance(arch, Arch) and callable(plan) for arch, plan in planners().items())
    True
    """
    found: dict[Arch, Planner] = {}
    for arch in Arch:
        if importlib.util.find_spec(f"{__name__}.{arch.value}") is None:
            continue
        module = importlib.import_module(f"{__name__}.{arch.value}")
        found[arch] = module.plan
    return found


def planner(arch: Arch) -> Planner:
    """The planner of `arch`, or a LayoutError listing the architectures that have one.

    >>> planner(next(arch for arch in Arch if arch not in planners()))
    Traceback (most recent call last):
    ...
    builder.errors.LayoutError: no crash layout for architecture '...' (have: ...)
    """
    try:
        return planners()[arch]
    except KeyError:
        have = ", ".join(sorted(known.value for known in planners()))
        raise LayoutError(
            f"no crash layout for architecture {arch.value!r} (have: {have})"
        ) from None


def plan_layout(
    outputs: BuildOutputs,
    memory: MemoryMap,
    info: CrashInfo | None,
    *,
    arch: Arch | None = None,
    backup: bool | None = None,
    firmware: Firmware | None = None,
    seeds: BootSeeds | None = None,
    crash_hotplug: CrashHotplug | None = None,
) -> Layout:
    """Plan the crash layout of a build for a memory map.

    `arch` None means the build's architecture (manifest.json); `backup`
    None means what the build's recipe said (kernel.backup_region);
    `firmware` is what device-tree architectures need (`read_firmware`);
    `seeds` the device tree's fresh randomness (load time only);
    `crash_hotplug` what the running kernel rewrites (`read_crash_hotplug`).
    """
    if not memory.of_kind(Kind.CRASH_KERNEL):
        raise LayoutError("the memory map has no 'Crash kernel' range (boot with crashkernel=)")
    plan = planner(outputs.target_arch(arch))
    inputs = LayoutInputs(
        kernel=outputs.kernel,
        initrd=outputs.initrd,
        cmdline=outputs.cmdline,
        memory=memory,
        info=info,
        options=LayoutOptions(
            backup=outputs.backup_region if backup is None else backup,
            seeds=seeds,
            crash_hotplug=crash_hotplug,
        ),
        firmware=firmware,
        kernel_name=str(outputs.kernel_path),
    )
    return plan(inputs)
