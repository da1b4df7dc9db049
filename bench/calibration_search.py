"""The calibration's search: guests, trials, the trial log, the smallest working size.

For one guest configuration (RAM, the main kernel's vCPUs, the CPUs the
capture kernel brings up, the initrd's zstd level, the dump target) `search`
boots crash cycles with different `crashkernel=` sizes and finds, in 8 MiB
steps, the smallest at which the dump completes; that minimum is booted a
second time to confirm it. Every boot is logged to WORK/trials.jsonl keyed
by the capture's bytes, so an interrupted run resumes without booting again;
a trial read back from the log is marked `replayed`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.crashkernel.model import CaptureProfile
from builder.recipe.settings import DEFAULT_COMPRESSION_LEVEL
from builder.units import MiB

STEP = 8 * MiB


@dataclass(frozen=True)
class Config:
    """One guest: RAM, the main kernel's vCPUs, and the capture kernel's nr_cpus=."""

    memory_mib: int
    vcpus: int
    capture_cpus: int = 1
    zstd_level: int = DEFAULT_COMPRESSION_LEVEL  # the recipe's initrd.compression_level
    target: str = "local"  # dump.target: local (ext4 disk) or nfs (ganesha on 127.0.0.1)
    nfs_version: str = "4.2"  # dump.nfs_version of the nfs target

    @property
    def name(self) -> str:
        name = f"{self.memory_mib // 1024}G/{self.vcpus}cpu/nr_cpus={self.capture_cpus}"
        default = self.zstd_level == DEFAULT_COMPRESSION_LEVEL
        name = name if default else f"{name}/zstd-{self.zstd_level}"
        return name if self.target == "local" else f"{name}/{self.target}{self._nfs_suffix}"

    @property
    def variant(self) -> str:
        """What the capture build depends on."""
        variant = f"nr_cpus={self.capture_cpus},zstd-{self.zstd_level}"
        return variant if self.target == "local" else f"{variant},{self.target}{self._nfs_suffix}"

    @property
    def _nfs_suffix(self) -> str:
        return "" if self.nfs_version == "4.2" else f"-{self.nfs_version}"


DEFAULT_CONFIGS = (Config(1024, 1), Config(1024, 2), Config(4096, 1), Config(4096, 2))
# The capture kernel brings up 2 CPUs here: what per_cpu is fitted from.
PER_CPU_CONFIG = Config(1024, 2, capture_cpus=2)
# The largest zstd window (the whole archive, 5.6 MiB, instead of the default
# level's 2 MiB): checks the decompressor term.
WINDOW_CONFIG = Config(1024, 1, zstd_level=19)
# More RAM to describe: checks how the need grows with the crashed RAM.
LARGE_CONFIG = Config(16384, 1)
# A network target: the dump goes over NFSv4 to nfs-ganesha on the host's loopback.
NFS_CONFIG = Config(1024, 1, target="nfs")


@dataclass(frozen=True)
class Trial:
    config: str
    size_mib: int
    ok: bool
    outcome: str
    seconds: float
    reserved_line: str
    capture_memory_line: str
    # What ties the trial to its boot (bench.calibration_evidence.boot_evidence); None
    # in trial logs written before evidence was kept.
    evidence: dict[str, object] | None = None
    replayed: bool = False  # read back from the trial log, not booted by this run


@dataclass(frozen=True)
class Capture:
    """A built capture directory for one configuration, and the kernel the guest boots first
    (the capture kernel itself when the recipe reuses the main kernel)."""

    directory: Path
    main_initrd: Path
    sha256: str  # of the capture's files, the main initrd and the main kernel
    profile: CaptureProfile
    kernel_version: str
    main_kernel: Path

    @property
    def key(self) -> str:
        """The trial log's key: the first 16 digits of `sha256`."""
        return self.sha256[:16]


class TrialLog:
    """trials.jsonl: every boot, so a rerun reuses what it already measured."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.entries: dict[tuple[str, str, int], Trial] = {}
        if path.exists() and not fresh:
            for line in path.read_text().splitlines():
                record = json.loads(line)
                key = record.pop("key")
                trial = Trial(**{**record, "replayed": True})
                self.entries[(key, trial.config, trial.size_mib)] = trial

    def get(self, key: str, config: Config, size_mib: int) -> Trial | None:
        return self.entries.get((key, config.name, size_mib))

    def add(self, key: str, trial: Trial) -> None:
        self.entries[(key, trial.config, trial.size_mib)] = trial
        record = {"key": key, **dataclasses.asdict(trial)}
        record.pop("replayed")
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


# One crash cycle: (capture, config, crashkernel MiB, work, timeout, idle) -> its trial.
Boot = Callable[[Capture, Config, int, Path, float, float], Trial]


def search(
    capture: Capture,
    config: Config,
    guess_mib: int,
    trials: TrialLog,
    work: Path,
    timeout: float,
    idle: float,
    crash_cycle: Boot,
) -> tuple[int | None, list[Trial]]:
    """Smallest working size in 8 MiB steps: gallop from the guess, bisect, confirm.

    `crash_cycle` boots one trial (bench.calibration_boot.boot: the x86_64 cycle;
    bench.calibrate_devicetree's for arm64 and riscv64).
    """
    step = STEP // MiB
    seen: list[Trial] = []
    cycle = crash_cycle

    def run(size: int, key: str = capture.key, label: str = "") -> bool:
        """Boot `size` (or replay it from the log under `key`); whether it dumped."""
        trial = trials.get(key, config, size)
        cached = " (from the log)"
        if trial is None:
            trial = cycle(capture, config, size, work, timeout, idle)
            trials.add(key, trial)
            cached = ""
        seen.append(trial)
        verdict = "ok  " if trial.ok else "FAIL"
        print(f"  {config.name:<22} {size:>4}M {verdict} {trial.seconds:6.1f} s  {label}"
              f"{trial.outcome}{cached}", flush=True)  # fmt: skip
        return trial.ok

    bounds = _gallop(run, max(step, guess_mib // step * step))
    if bounds is None:
        return None, seen
    low, high = bounds
    while high - low > step:
        middle = (low + high) // 2 // step * step
        if run(middle):
            high = middle
        else:
            low = middle
    # A minimum that fails its second boot was luck: the next size up must pass twice too.
    while not run(high, capture.key + "-confirm", "confirm: "):
        high += step
        while not run(high):
            high += step
    return high, seen


def _gallop(run: Callable[[int], bool], size: int) -> tuple[int, int] | None:
    """From `size`, steps doubling away from it: (largest failing, smallest working) MiB,
    0 for a failing bound when everything down to one step works; None: nothing to 1 GiB."""
    step = STEP // MiB
    low, high = 0, 0
    if run(size):
        high, distance = size, step
        while not low:
            if high - distance < step:
                break  # everything down to one step works; 0 stays the failing bound
            if run(high - distance):
                high -= distance
                distance *= 2
            else:
                low = high - distance
        return low, high
    low, distance = size, step
    while not high:
        if low + distance > 1024:
            return None
        if run(low + distance):
            high = low + distance
        else:
            low += distance
            distance *= 2
    return low, high
