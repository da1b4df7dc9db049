#!/usr/bin/env python3
"""Calibrate the crashkernel memory model on real crash cycles in QEMU (TCG).

For each guest configuration (RAM size, vCPUs of the main kernel, CPUs the
capture kernel brings up) this boots the default recipe's real crash cycle
(tests/vm/harness.py: main kernel, `kexec -p`, sysrq crash, our capture initrd
saving the vmcore to an ext4 disk) with different `crashkernel=` sizes and
finds, in 8 MiB steps, the smallest one at which the dump completes: the
vmcore is saved and `makedumpfile --dump-dmesg` on the host reads the crashed
kernel's log from it. The minimum is booted a second time to confirm it.

Then it fits the model's free constants (`kernel_runtime`, `per_crashed_gib`,
`per_cpu`) to the minima and prints, per configuration: measured minimum, our
recommendation, margin, and the ratio against the anchor (kdump-utils'
256 MiB default for 2-64 GiB of RAM on x86_64).

One kernel series at a time: `--recipe` names the recipe whose kernel is
calibrated (default recipes/qemu-x86_64.toml, Debian 12's 6.1;
recipes/qemu-x86_64-trixie.toml is Debian 13's 6.12), and `--write` stores
builder/crashkernel/calibration/<arch>-<series>.json for it.

    .venv/bin/python -m bench.calibrate_crashkernel            # measure and print
    .venv/bin/python -m bench.calibrate_crashkernel --write    # ... and store the constants
    .venv/bin/python -m bench.calibrate_crashkernel --recipe recipes/qemu-x86_64-trixie.toml
    .venv/bin/python -m bench.calibrate_crashkernel --stored   # print from the stored runs

Each trial is logged to WORK/trials.jsonl keyed by the build's hashes, so an
interrupted run resumes without booting again (--fresh ignores the log).
`--write` stores a minimum only with the evidence of its decisive boots (the
passing one at it, the failing one below it: bench/calibration_evidence.py),
so a trial replayed from a log without its console is refused.

The parts: bench/calibration_search.py (guests, trials, the search),
bench/calibration_boot.py (this crash cycle), bench/calibration_fit.py (the
fit and the stored form), bench/calibration_evidence.py (what ties a stored
number to its boot).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.calibration_boot import NFS_PORT, boot, build_capture, nfs_server
from bench.calibration_fit import (
    calibration_file,
    calibration_record,
    fit_constants,
    print_table,
    stored_table,
)
from bench.calibration_search import (
    DEFAULT_CONFIGS,
    LARGE_CONFIG,
    NFS_CONFIG,
    PER_CPU_CONFIG,
    WINDOW_CONFIG,
    Capture,
    Config,
    Trial,
    TrialLog,
    search,
)
from bench.calibration_verify import verify_store
from builder.crashkernel.model import Calibration, CaptureProfile, calibrations, kernel_series
from builder.recipe.parse import parse_recipe
from builder.units import MiB
from tests.support.paths import DEFAULT_RECIPE, REPO
from tests.vm import harness

REGENERATE = ".venv/bin/python -m bench.calibrate_crashkernel --write"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="recipe to calibrate")
    parser.add_argument("--write", action="store_true", help="store the fitted constants")
    parser.add_argument("--stored", action="store_true", help="no boots: print the stored runs")
    parser.add_argument("--fresh", action="store_true", help="ignore the trial log")
    parser.add_argument(
        "--no-extra", action="store_true", help="only the 1G/4G x 1/2 vCPU configurations"
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "kdump-calib")
    parser.add_argument("--timeout", type=float, default=480, help="seconds per boot")
    parser.add_argument("--idle", type=float, default=150, help="seconds without console output")
    parser.add_argument("--guess", type=int, default=128, help="first size to try, MiB")
    parser.add_argument(
        "--nfs-version",
        default=NFS_CONFIG.nfs_version,
        help="dump.nfs_version of the nfs guest (Debian 13's kernel writes to this host's "
        "nfs-ganesha with 4.1; with 4.2 makedumpfile's writes fail with EIO)",
    )
    parser.add_argument("--verify", type=Path, metavar="STORE",
                        help="re-boot the decisive trials of STORE (made from --recipe) and keep "
                        "their evidence in it (bench/calibration_verify.py)")  # fmt: skip
    parser.add_argument("--only", help="with --verify: only guests whose name has this text")
    args = parser.parse_args()
    args.recipe = args.recipe.resolve()

    if args.verify:
        return _verify(args)
    if args.stored:
        ok = all([stored_table(path) for path in calibrations().values()])
        print(f"goal (0 <= margin <= 32M everywhere): {'met' if ok else 'NOT met'}")
        return 0

    stack = contextlib.ExitStack()
    with stack:
        return _measure(args, stack)


def _verify(args: argparse.Namespace) -> int:
    if not args.verify.is_file():
        raise SystemExit(f"{args.verify}: no such calibration store")
    args.work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if '"target": "nfs"' in args.verify.read_text():
            stack.enter_context(nfs_server(args.work))
        disagreements = verify_store(
            args.verify.resolve(), lambda config: build_capture(args.work, config, args.recipe),
            boot, args.work, (args.timeout, args.idle),
            lambda config: args.only is None or args.only in config.name,
        )  # fmt: skip
    print("\n".join(["disagreements:", *disagreements] if disagreements else ["all agree"]))
    return 1 if disagreements else 0


@dataclass
class Campaign:
    """What a calibration run found: the captures built, the minima and their trials."""

    captures: dict[str, Capture] = dataclasses.field(default_factory=dict)
    minima: dict[Config, int | None] = dataclasses.field(default_factory=dict)
    trials: dict[Config, list[Trial]] = dataclasses.field(default_factory=dict)

    def profiles(self) -> dict[str, CaptureProfile]:
        return {variant: capture.profile for variant, capture in self.captures.items()}

    def found(self) -> dict[Config, int]:
        return {config: value * MiB for config, value in self.minima.items() if value is not None}


def run_configs(
    configs: list[Config], base: Path, args: argparse.Namespace, trials: TrialLog
) -> Campaign:
    """The minimum of every configuration of the recipe `base`, each found by `search`."""
    campaign = Campaign()
    guess = args.guess
    for config in configs:
        if config.variant not in campaign.captures:
            campaign.captures[config.variant] = build_capture(args.work, config, base)
        capture = campaign.captures[config.variant]
        minimum, seen = search(capture, config, guess, trials, args.work, args.timeout, args.idle,
                               boot)  # fmt: skip
        campaign.minima[config] = minimum
        campaign.trials[config] = seen
        if minimum is not None:
            guess = minimum
        print(f"{config.name}: minimum {minimum}M", flush=True)
    return campaign


def _measure(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    missing = harness.missing_host_tools()
    if missing:
        raise SystemExit(f"missing host tools: {missing} (./bootstrap test installs them)")
    args.work.mkdir(parents=True, exist_ok=True)
    trials = TrialLog(args.work / "trials.jsonl", args.fresh)
    configs = [
        *DEFAULT_CONFIGS,
        *([] if args.no_extra else [PER_CPU_CONFIG, LARGE_CONFIG, WINDOW_CONFIG]),
    ]
    if not args.no_extra:
        # First: its trials are the newest code path.
        configs.insert(0, dataclasses.replace(NFS_CONFIG, nfs_version=args.nfs_version))
        server = stack.enter_context(nfs_server(args.work))
        print(f"nfs target: nfs-ganesha on 127.0.0.1:{NFS_PORT} (pid {server})", flush=True)
    else:
        print("network dump targets: none measured (--no-extra)", flush=True)
    campaign = run_configs(configs, args.recipe, args, trials)
    profiles, found = campaign.profiles(), campaign.found()
    constants = fit_constants(profiles, found)
    calibration = Calibration.from_constants(constants)
    print(
        "fitted constants (MiB): " + ", ".join(f"{k}={v / MiB:.2f}" for k, v in constants.items())
    )
    ok = print_table(profiles, campaign.minima, calibration)
    print(f"goal (0 <= margin <= 32M everywhere): {'met' if ok else 'NOT met'}")
    four_gib = [v for config, v in campaign.minima.items() if config.memory_mib == 4096 and v]
    # (the 16 GiB guest is a check of the model, not part of this goal)
    if four_gib:
        verdict = "met" if max(four_gib) <= 128 else "NOT met"
        print(f"goal (4 GiB guest dumps with <= 128M): {verdict}, worst minimum {max(four_gib)}M")
    if args.write:
        nfs = (
            ""
            if args.nfs_version == NFS_CONFIG.nfs_version
            else f" --nfs-version {args.nfs_version}"
        )
        _write_record(args.recipe, campaign, constants, args.work, nfs)
    return 0


def _write_record(
    base: Path, campaign: Campaign, constants: dict[str, int], work: Path, options: str = ""
) -> None:
    """calibration/<arch>-<series>.json: the constants, the profiles and every trial."""
    recipe = parse_recipe(base.read_text(), base)
    kernel = next(iter(campaign.captures.values())).kernel_version
    major, minor = kernel_series(kernel)
    path = calibration_file(str(recipe.target.arch), kernel)
    what = (
        f"crashkernel model constants fitted to QEMU TCG crash cycles of "
        f"{base.relative_to(REPO)}; minimum = smallest crashkernel= (8 MiB steps) whose "
        "dump completed and validated with makedumpfile --dump-dmesg, booted twice"
    )
    extra = {"arch": str(recipe.target.arch), "series": f"{major}.{minor}",
             "recipe": str(base.relative_to(REPO))}  # fmt: skip
    record = calibration_record(
        f"{REGENERATE} --recipe {base.relative_to(REPO)}{options}", what, "qemu-system-x86_64",
        campaign.captures, constants, campaign.found(), campaign.trials, work, path, extra,
    )  # fmt: skip
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
