#!/usr/bin/env python3
"""Calibrate the crashkernel memory model for a device-tree guest (arm64, riscv64) on real
crash cycles in QEMU virt (TCG).

The twin of bench/calibrate_crashkernel.py for the guests that load with
our own `kdump-build load` (kexec-tools cannot load on these kernels,
tests/vm/loader_guest.py), and built from its parts (the search in 8 MiB
steps with a confirming second boot, the trial log, the fit of the model's
free constants, the recommendation): for each guest (RAM, vCPUs of the main
kernel, CPUs the capture kernel brings up) it boots the architecture's
recipe's real crash cycle with several `crashkernel=` sizes. The main side
runs our loader, sysrq crashes it, our capture initrd saves the vmcore with
makedumpfile, and the host checks it with that architecture's makedumpfile
--dump-dmesg under qemu-user. Then it fits `kernel_runtime`,
`per_crashed_gib`, `per_cpu` to the minima and prints per guest: measured
minimum, recommendation, margin, and the ratio against the anchor.

    .venv/bin/python -m bench.calibrate_devicetree            # arm64: measure and print
    .venv/bin/python -m bench.calibrate_devicetree --write    # ... and store the constants
    .venv/bin/python -m bench.calibrate_devicetree --stored   # print from the stored runs
    .venv/bin/python -m bench.calibrate_devicetree --arch riscv64 --configs 1G/1 --write
    .venv/bin/python -m bench.calibrate_devicetree --verify   # re-boot the stored minima

The store is builder/crashkernel/calibration/<arch>-<series>.json (the
record format of calibration.json). Trials are logged to WORK/trials.jsonl
keyed by the build's hashes, so an interrupted run resumes without booting
again.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bench.calibration_evidence import boot_evidence
from bench.calibration_fit import (
    calibration_record,
    fit_constants,
    margin_rows,
    profile_records,
    stored_minima,
    stored_profiles,
)
from bench.calibration_search import (
    DEFAULT_CONFIGS,
    PER_CPU_CONFIG,
    Capture,
    Config,
    Trial,
    TrialLog,
    search,
)
from bench.calibration_verify import stored_config, verify_store
from builder.arch import ARCHES, Arch
from builder.crashkernel.model import Calibration, CaptureProfile, load_calibration
from builder.crashkernel.profile import capture_profile
from builder.crashkernel.reservation import reservation
from builder.image.outputs import write_outputs
from builder.image.pipeline import plan_build
from builder.recipe.parse import parse_recipe
from builder.units import MiB
from tests.support import recipes
from tests.support.capture_memory import capture_part, memory_reason
from tests.support.guestroot import guest_root
from tests.support.paths import REPO
from tests.vm import loader_guest

CALIBRATION = REPO / "builder" / "crashkernel" / "calibration"


@dataclass(frozen=True)
class Guest:
    """What one architecture's calibration boots, and where it is stored."""

    arch: Arch
    recipe: Path
    store: Path
    anchor_spec: str  # the reservation the recommendation is compared with
    anchor_name: str
    configs: tuple[Config, ...] = (*DEFAULT_CONFIGS, PER_CPU_CONFIG)

    @property
    def regenerate(self) -> str:
        flag = "" if self.arch is Arch.AARCH64 else f" --arch {self.arch.value}"
        return f".venv/bin/python -m bench.calibrate_devicetree{flag} --write"


GUESTS = {
    guest.arch: guest
    for guest in (
        # kdump-utils (kdump-lib.sh, kdump_get_arch_recommend_crashkernel) on aarch64, 4 KiB pages.
        Guest(Arch.AARCH64, REPO / "recipes" / "qemu-arm64.toml", CALIBRATION / "aarch64-6.1.json",
              "1G-4G:256M,4G-64G:320M,64G-:576M", "kdump-utils' aarch64 default"),
        # kdump-utils has no riscv64 default; the anchor is the recipe's own 256M.
        Guest(Arch.RISCV64, REPO / "recipes" / "qemu-riscv64.toml",
              CALIBRATION / "riscv64-6.12.json", "256M", "the recipe's crashkernel=256M"),
    )
}  # fmt: skip
LOAD_AND_CRASH = f"""
if kdump_build load {loader_guest.GUEST_OUTDIR} --method segments; then
    echo "main: load finished"
else
    echo "main: load failed"
    poweroff -f
fi
echo c > /proc/sysrq-trigger
"""


def build_capture(guest: Guest, work: Path, config: Config) -> Capture:
    """The guest's recipe with the config's nr_cpus=, and the loader's main initrd.

    The fit uses the priors when no calibration is stored yet (the first run).
    """
    default = tomllib.loads(guest.recipe.read_text())
    cmdline = [f"nr_cpus={config.capture_cpus}" if word.startswith("nr_cpus=") else word
               for word in default["kernel"]["cmdline"]]  # fmt: skip
    # The config's zstd level, not the recipe's default: a stored measurement is re-booted
    # on the capture it was measured with (aarch64-6.1 was measured at level 19).
    overrides: dict[str, dict[str, object]] = {
        "kernel": {"cmdline": cmdline}, "initrd": {"compression_level": config.zstd_level},
    }  # fmt: skip
    text = recipes.recipe_text(overrides, base=guest.recipe)
    recipe = parse_recipe(text, guest.recipe)
    directory = work / f"capture-{config.variant}"
    stored = load_calibration(guest.store) if guest.store.exists() else Calibration()
    result = plan_build(recipe, calibration=stored)
    write_outputs(result, directory)
    main_initrd = work / f"main-initrd-{config.variant}.img"
    initrd = loader_guest.loader_initrd(guest.arch, result.kernel_version,
                                        guest_root(guest.arch), LOAD_AND_CRASH)  # fmt: skip
    main_initrd.write_bytes(initrd)
    digest = hashlib.sha256()
    for name in ("vmlinuz", "initrd.img", "cmdline.txt"):
        digest.update((directory / name).read_bytes())
    digest.update(initrd)
    profile = capture_profile(recipe, result.kernel, result.cmdline, result.members, result.initrd)
    return Capture(
        directory,
        main_initrd,
        digest.hexdigest(),
        profile,
        result.kernel_version,
        directory / "vmlinuz",  # the recipe reuses the main kernel
    )


def crash_cycle(
    guest: Guest,
    capture: Capture,
    config: Config,
    size_mib: int,
    work: Path,
    timeout: float,
    idle: float,
) -> Trial:
    """One crash cycle with crashkernel=<size_mib>M; ok when the vmcore validates."""
    with tempfile.TemporaryDirectory(dir=work, prefix="trial.") as scratch_name:
        scratch = Path(scratch_name)

        def failed(console: str, silent: float) -> str | None:
            if "Kernel panic" in capture_part(console):
                time.sleep(2)  # let the panic's reason reach the log
                return "capture kernel panic"
            return f"no console output for {idle:.0f} s" if silent > idle else None

        run = loader_guest.crash_cycle(
            guest.arch, capture.directory, capture.kernel_version, LOAD_AND_CRASH, scratch,
            append=f"crashkernel={size_mib}M", memory=f"{config.memory_mib}M", cpus=config.vcpus,
            timeout=timeout, stop=failed, main_initrd=capture.main_initrd,
        )  # fmt: skip
        console = run.boot.console
        if not console.strip():
            # Not a trial's outcome: the harness itself is broken; recording it would mislead.
            raise SystemExit(f"QEMU wrote no console (exit {run.boot.returncode}): see its command")
        evidence = boot_evidence(capture, run.boot.command, console, work, scratch)
        ok, outcome = _outcome(run, scratch)
        return Trial(
            config.name, size_mib, ok, outcome, round(run.boot.seconds, 1),
            _line(console, r"crashkernel reserved: [^\n]*"),
            _line(capture_part(console), r"Memory: \d+K/\d+K available[^\n]*"),
            evidence,
        )  # fmt: skip


def _line(console: str, pattern: str) -> str:
    match = re.search(pattern, console)
    return match.group(0).strip() if match else ""


def _outcome(run: loader_guest.GuestCrash, scratch: Path) -> tuple[bool, str]:
    """Whether the trial dumped and validated, and what happened in a few words."""
    console, stopped = run.boot.console, run.boot.stopped
    if "main: load failed" in console:
        return False, "kdump-build load refused the load"
    if "crashkernel reserved" not in console:
        return False, "nothing reserved"
    panic = re.search(r"Kernel panic - not syncing: ([^\n]*)", capture_part(console))
    if stopped == "capture kernel panic" and panic:
        stopped = f"{stopped}: {panic.group(1).strip()}"
    if stopped or "kdump: dump saved to" not in console:
        reason = memory_reason(console)
        if reason:
            return False, f"out of memory: {reason}" + (f" ({stopped})" if stopped else "")
        return False, stopped or f"no dump saved (qemu exit {run.boot.returncode})"
    if len(run.vmcores) != 1:
        return False, f"expected one vmcore on the dump disk, found {len(run.vmcores)}"
    try:
        log = loader_guest.dump_dmesg(run.root, run.vmcores[0], scratch / "dmesg.txt")
    except subprocess.CalledProcessError as error:
        return False, f"makedumpfile --dump-dmesg failed ({error.returncode})"
    if "sysrq triggered crash" not in log:
        return False, "vmcore log lacks 'sysrq triggered crash'"
    return True, f"dump saved and valid ({run.vmcores[0].stat().st_size} bytes)"


def anchor(guest: Guest, config: Config) -> int:
    """The anchor's reservation for this guest's RAM."""
    return reservation(guest.anchor_spec, config.memory_mib * MiB, guest.arch).size


def print_table(
    guest: Guest,
    profiles: dict[str, CaptureProfile],
    minima: dict[Config, int | None],
    calibration: Calibration,
) -> bool:
    """Measured minimum, recommendation, margin and the anchor ratio per guest; the goal met?"""
    print(f"\n{'guest':<22} {'measured min':>12} {'recommended':>11} {'margin':>7} {'anchor':>7} "
          f"{'vs anchor':>9}   (anchor: {guest.anchor_name})")  # fmt: skip
    rows = margin_rows(profiles, minima, calibration)
    for row in rows:
        config = row.config
        if row.minimum is None or row.margin is None:
            print(f"{config.name:<22} {'none <=1G':>12} {row.recommended // MiB:>10}M")
            continue
        anchored = anchor(guest, config)
        print(f"{config.name:<22} {row.minimum:>11}M {row.recommended // MiB:>10}M "
              f"{row.margin // MiB:>6}M {anchored // MiB:>6}M "
              f"{row.recommended / anchored:>8.2f}x")  # fmt: skip
    good = all(row.meets_goal for row in rows)
    print(f"goal (0 <= margin <= 32M everywhere): {'met' if good else 'NOT met'}")
    return good


def _stored(guest: Guest) -> int:
    stored = json.loads(guest.store.read_text())
    minima: dict[Config, int | None] = {
        Config(m["ram"] // MiB, m["vcpus"], m["capture_cpus"], m["zstd_level"], m["target"]):
        m["minimum"] // MiB for m in stored["measurements"]
    }  # fmt: skip
    profiles = {
        variant: CaptureProfile(**profile) for variant, profile in stored["profiles"].items()
    }
    print_table(guest, profiles, minima, load_calibration(guest.store))
    return 0


def _configs(guest: Guest, names: str | None) -> tuple[Config, ...]:
    """The guest's configurations, or those `names` picks ("1G/1,4G/1": RAM/vCPUs)."""
    if names is None:
        return guest.configs
    wanted = set(names.split(","))
    picked = tuple(c for c in guest.configs if f"{c.memory_mib // 1024}G/{c.vcpus}" in wanted
                   and c.capture_cpus == 1)  # fmt: skip
    if not picked:
        raise SystemExit(f"--configs {names}: none of {[c.name for c in guest.configs]}")
    return picked


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=Arch, default=Arch.AARCH64, choices=list(GUESTS))
    parser.add_argument("--write", action="store_true", help="store the constants")
    parser.add_argument("--stored", action="store_true", help="no boots: print the stored runs")
    parser.add_argument("--fresh", action="store_true", help="ignore the trial log")
    parser.add_argument("--configs", help="only these guests, RAM/vCPUs: 1G/1,4G/1")
    parser.add_argument("--work", type=Path, help="default: $TMPDIR/kdump-<arch>")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per boot")
    parser.add_argument("--idle", type=float, default=150, help="seconds without console output")
    parser.add_argument("--guess", type=int, default=128, help="first size to try, MiB")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="re-boot the stored minima's "
        "decisive trials and keep their evidence (bench/calibration_verify.py)",
    )
    parser.add_argument("--only", help="with --verify: only guests whose name has this text")
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    guest = GUESTS[args.arch]
    if args.stored:
        return _stored(guest)
    work = args.work or Path(tempfile.gettempdir()) / f"kdump-{guest.arch.value}"
    work.mkdir(parents=True, exist_ok=True)
    if args.verify:
        disagreements = verify_store(
            guest.store, lambda config: build_capture(guest, work, config),
            functools.partial(crash_cycle, guest), work, (args.timeout, args.idle),
            lambda config: args.only is None or args.only in config.name,
        )  # fmt: skip
        print("\n".join(["disagreements:", *disagreements] if disagreements else ["all agree"]))
        return 1 if disagreements else 0
    trials = TrialLog(work / "trials.jsonl", args.fresh)
    captures: dict[str, Capture] = {}
    minima: dict[Config, int | None] = {}
    seen_trials: dict[Config, list[Trial]] = {}
    guess = args.guess
    cycle = functools.partial(crash_cycle, guest)
    for config in _configs(guest, args.configs):
        if config.variant not in captures:
            captures[config.variant] = build_capture(guest, work, config)
        minimum, seen = search(captures[config.variant], config, guess, trials, work,
                               args.timeout, args.idle, cycle)  # fmt: skip
        minima[config] = minimum
        seen_trials[config] = seen
        guess = minimum or guess
        print(f"{config.name}: minimum {minimum}M", flush=True)
    profiles = {variant: capture.profile for variant, capture in captures.items()}
    found = {config: value * MiB for config, value in minima.items() if value is not None}
    kept: dict[Config, dict[str, Any]] = {}
    if args.configs and guest.store.exists():
        profiles, found, kept = merge_stored(json.loads(guest.store.read_text()), profiles, found)
        minima = {**{config: value // MiB for config, value in found.items()}, **minima}
    constants = fit_constants(profiles, found)
    calibration = Calibration.from_constants(constants)
    print(
        "fitted constants (MiB): " + ", ".join(f"{k}={v / MiB:.2f}" for k, v in constants.items())
    )
    print_table(guest, profiles, minima, calibration)
    if args.write:
        _write(guest, captures, profiles, constants, found, seen_trials, kept, work)
    return 0


def merge_stored(
    stored: dict[str, Any], profiles: dict[str, CaptureProfile], found: dict[Config, int]
) -> tuple[dict[str, CaptureProfile], dict[Config, int], dict[Config, dict[str, Any]]]:
    """A run that re-measured some guests (`found`, bytes) merged into the stored record:
    every variant's profile (today's for a rebuilt one), every guest's minimum in the
    stored order, and the stored measurements this run did not replace (kept as stored,
    with their evidence). The fit covers them all."""
    kept = {stored_config(m): m for m in stored["measurements"] if stored_config(m) not in found}
    return {**stored_profiles(stored), **profiles}, {**stored_minima(stored), **found}, kept


def _write(
    guest: Guest,
    captures: dict[str, Capture],
    profiles: dict[str, CaptureProfile],
    constants: dict[str, int],
    found: dict[Config, int],
    trials: dict[Config, list[Trial]],
    kept: dict[Config, dict[str, Any]],
    work: Path,
) -> None:
    """Store the constants, the profiles and every guest's measurement; those in `kept`
    (not re-measured by this run) as they were stored."""
    machine = ARCHES[guest.arch].qemu
    assert machine is not None
    what = (
        "crashkernel model constants fitted to QEMU TCG (virt) crash cycles of "
        f"{guest.recipe.relative_to(REPO)} loaded by kdump-build's own loader; minimum = "
        "smallest crashkernel= (8 MiB steps) whose dump completed and validated with "
        f"{guest.arch.value} makedumpfile --dump-dmesg, booted twice"
    )
    measured = {config: value for config, value in found.items() if config not in kept}
    record = calibration_record(guest.regenerate, what, machine.system, captures, constants,
                                measured, trials, work, guest.store)  # fmt: skip
    new = iter(cast(list[dict[str, object]], record["measurements"]))
    record["profiles"] = profile_records(profiles)
    record["measurements"] = [kept[config] if config in kept else next(new) for config in found]
    guest.store.parent.mkdir(exist_ok=True)
    guest.store.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {guest.store.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
