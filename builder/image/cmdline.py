"""The capture kernel's command line: the recipe's words, and what its config asks for.

A kernel built with a default CMA area (`CONFIG_DMA_CMA=y` with
`CONFIG_CMA_SIZE_MBYTES` or `CONFIG_CMA_SIZE_PERCENTAGE` above 0: Debian's
arm64 kernels reserve 64 MiB, Debian 14's riscv64 ones 128 MiB) carves that
area out of the crash reservation when it boots as the capture kernel; no
capture driver needs it, so `cma=0` goes on the command line. A kernel with
`CONFIG_DMA_CMA=y` and `CONFIG_OF_RESERVED_MEM=y` may also take a default
area from the device tree (a `shared-dma-pool` node marked
`linux,cma-default`, as boards such as the Raspberry Pi declare): any `cma=`
makes the kernel skip that node, so it gets `cma=0` too. The decision reads
the capture kernel's config, so it holds for every architecture and release
without a recipe saying it (kernel/dma/contiguous.c: the size comes from
`cma=` when given, else from the config's selection).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Arguments the capture takes from its kernel's config; a recipe that gives its
# own value of one (say `cma=32M`) keeps it.
CMA_OFF = "cma=0"


def _number(config: Mapping[str, str], name: str) -> int:
    try:
        return int(config.get(name, "0"))
    except ValueError:
        return 0


def default_cma(config: Mapping[str, str]) -> bool:
    """Whether the kernel may reserve a default CMA area at boot when no `cma=` says otherwise.

    >>> default_cma({"CONFIG_DMA_CMA": "y", "CONFIG_CMA_SIZE_MBYTES": "64",
    ...              "CONFIG_CMA_SIZE_SEL_MBYTES": "y"})
    True
    >>> default_cma({"CONFIG_DMA_CMA": "y", "CONFIG_CMA_SIZE_MBYTES": "0",
    ...              "CONFIG_CMA_SIZE_SEL_MBYTES": "y"})
    False
    >>> default_cma({"CONFIG_DMA_CMA": "y", "CONFIG_CMA_SIZE_MBYTES": "0",
    ...              "CONFIG_CMA_SIZE_PERCENTAGE": "10", "CONFIG_CMA_SIZE_SEL_MAX": "y"})
    True
    >>> default_cma({"CONFIG_DMA_CMA": "y", "CONFIG_CMA_SIZE_MBYTES": "0",
    ...              "CONFIG_OF_RESERVED_MEM": "y"})
    True
    """
    if config.get("CONFIG_DMA_CMA") != "y":
        return False
    if config.get("CONFIG_OF_RESERVED_MEM") == "y":
        return True  # the device tree may declare the default area, whatever the size says
    mbytes = _number(config, "CONFIG_CMA_SIZE_MBYTES") > 0
    percentage = _number(config, "CONFIG_CMA_SIZE_PERCENTAGE") > 0
    if config.get("CONFIG_CMA_SIZE_SEL_PERCENTAGE") == "y":
        return percentage
    if config.get("CONFIG_CMA_SIZE_SEL_MIN") == "y":
        return mbytes and percentage
    if config.get("CONFIG_CMA_SIZE_SEL_MAX") == "y":
        return mbytes or percentage
    return mbytes  # CONFIG_CMA_SIZE_SEL_MBYTES, the Kconfig default


def config_arguments(config: Mapping[str, str], given: Sequence[str]) -> list[str]:
    """The arguments the capture kernel's config calls for that `given` does not set.

    >>> arm64 = {"CONFIG_DMA_CMA": "y", "CONFIG_CMA_SIZE_MBYTES": "64"}
    >>> config_arguments(arm64, ["irqpoll"]), config_arguments(arm64, ["cma=16M"])
    (['cma=0'], [])
    >>> config_arguments({}, ["irqpoll"])
    []
    """
    if default_cma(config) and not any(word.startswith("cma=") for word in given):
        return [CMA_OFF]
    return []


def capture_cmdline(
    cmdline: Sequence[str], cmdline_append: Sequence[str], config: Mapping[str, str]
) -> str:
    """The recipe's kernel.cmdline, the config's arguments, kernel.cmdline_append, rdinit=.

    kexec adds elfcorehdr= and the memory map (or the device tree says them).

    >>> capture_cmdline(["irqpoll"], ["console=ttyAMA0"], {"CONFIG_DMA_CMA": "y",
    ...                 "CONFIG_CMA_SIZE_MBYTES": "64"})
    'irqpoll cma=0 console=ttyAMA0 rdinit=/init'
    """
    derived = config_arguments(config, [*cmdline, *cmdline_append])
    return " ".join([*cmdline, *derived, *cmdline_append, "rdinit=/init"])
