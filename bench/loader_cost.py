"""Boot cost of the loaders: kdump-load against `kdump-build load` and `kexec -p`, one guest.

    flock /work/notes/vm.lock .venv/bin/python -m bench.loader_cost [--rounds N] [--write]

Builds the default recipe, boots its kernel as the main kernel of one x86_64
TCG guest (1 GiB, one vCPU, crashkernel=192M) with the host root over 9p and
Debian's kexec-tools in the main initrd, and loads the capture there in
rounds, each loader once per round in the same order: the static
`kdump-load OUTDIR` (builder/kexec/loader/), `kdump-build load OUTDIR` (the
venv's entry point, chrooted into the host root) and `kexec -p` with the
capture's kernel, initrd and command line. Each load is undone before the
next (`kdump-load --unload`; kexec-tools' own `kexec -p -u` after its load).
A warm-up round goes first and stays out of the medians.

The guest times itself: a shell builtin writes "loader-cost: TOOL ROUND
start" to /dev/kmsg just before the command and "... loaded" (or "failed")
just after it; the kernel stamps each line with its printk clock (local_clock,
nanoseconds since boot, shown to the microsecond). `dmesg -n 1` keeps those
lines off the serial console while timing, so printing them is not timed;
`printk.devkmsg=on` keeps the kernel from rate-limiting them. At the end the
guest prints them with `dmesg`, and the host pairs them up.

It prints every run, the medians and the two ratios against their goals
(bench/loader_cost_table.py). With --write it stores the evidence (date,
machine, guest kernel, kexec-tools version, the kdump-load binary's sha256,
the QEMU command, the console's sha256 and its script lines, every run) in
bench/evidence/loader-cost.json and puts the section it makes from that store
into docs/performance.md (tests/unit/test_loader_cost.py checks they agree).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import kdump_build, kdump_build_command, machine, scratch, shared_cache
from bench.loader_cost_table import (
    TOOLS,
    Run,
    goal_rows,
    medians,
    parse_runs,
    replace_section,
    section,
)
from builder.arch import Arch
from builder.kexec.loader import shipped_loader
from tests.support.paths import DEFAULT_RECIPE, REPO
from tests.support.qemu import Boot
from tests.vm import harness

RESULTS = REPO / "bench" / "evidence" / "loader-cost.json"
DOC = REPO / "docs" / "performance.md"
ROUNDS = 5
WARMUP_ROUNDS = 1
APPEND = "console=ttyS0 crashkernel=192M printk.devkmsg=on"
CLOCK = (
    "the guest kernel's printk time stamps (local_clock, shown to the microsecond) of "
    "lines a shell builtin writes to /dev/kmsg just before and just after each command; "
    "the interval holds the command's fork, exec and exit."
)
# What one round does; ROUND and the paths are filled in by `guest_script`.
ROUND = """
    mark "kdump-load $round start"
    if "$loader" "$outdir"; then mark "kdump-load $round loaded"; else mark "kdump-load $round failed"; fi
    state "kdump-load $round"
    "$loader" --unload
    mark "kdump-build $round start"
    if in_host "$python_load"; then mark "kdump-build $round loaded"; else mark "kdump-build $round failed"; fi
    state "kdump-build $round"
    "$loader" --unload
    mark "kexec-tools $round start"
    if kexec -p "$outdir/vmlinuz" --initrd="$outdir/initrd.img" --command-line="$cmdline"; then
        mark "kexec-tools $round loaded"
    else
        mark "kexec-tools $round failed"
    fi
    state "kexec-tools $round"
    kexec -p -u
"""  # noqa: E501


def guest_script(outdir: Path, loader: Path, rounds: int) -> str:
    """The main side's script: the rounds, then the stamped lines (`harness.HOSTROOT_INIT`'s
    `in_host` runs a command chrooted into the host root)."""
    python_load = f"{shlex.join(kdump_build_command())} load {shlex.quote(str(outdir))}"
    return f"""
# /run must be writable for kdump-build's state file; the host root is read-only.
mount -t tmpfs tmpfs /host/run
loader=/host{shlex.quote(str(loader))}
outdir=/host{shlex.quote(str(outdir))}
python_load={shlex.quote(python_load)}
cmdline="$(cat "$outdir/cmdline.txt")"
echo "cost: guest kernel $(uname -r)"
echo "cost: $(kexec --version 2>&1)"
mark() {{ echo "loader-cost: $1" > /dev/kmsg; }}
state() {{ echo "cost: $1 crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"; }}
dmesg -n 1
round=0
while [ "$round" -lt {rounds} ]; do
{ROUND}
    round=$((round + 1))
done
dmesg | grep 'loader-cost: ' | sed 's/^/timing: /'
echo "cost: done"
"""


def boot(outdir: Path, kernel_version: str, work: Path, rounds: int) -> Boot:
    body = guest_script(outdir, shipped_loader(Arch.X86_64), rounds)
    initrd = work / "main-initrd.img"
    initrd.write_bytes(harness.build_hostroot_initrd(kernel_version, body, REPO, kexec=True))
    return harness.run_qemu(outdir / "vmlinuz", initrd, APPEND, None, memory="1G", cpus=1,
                            log=work / "console.log", share_host_root=True,
                            timeout=600 + 300 * rounds)  # fmt: skip


def script_lines(console: str) -> list[str]:
    """What the guest printed from the script's first line on (the loaders' own output,
    the stamped lines), without the kernel's messages ("[   time] ...")."""
    lines = [line.rstrip("\r") for line in console.splitlines()]
    first = next((n for n, line in enumerate(lines) if line.startswith("cost: ")), len(lines))
    return [line for line in lines[first:] if not line.startswith("[")]


def _said(lines: list[str], pattern: str) -> str:
    found = [match[1] for line in lines if (match := re.match(pattern, line))]
    if not found:
        sys.exit(f"the guest never printed {pattern!r}; see the console log")
    return found[0]


def measure(work: Path, rounds: int) -> dict[str, Any]:
    """Build, boot once, and return the evidence of the run (runs included)."""
    started, before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine()
    build = kdump_build(DEFAULT_RECIPE, work / "out", shared_cache())
    kernel_version = str(build.summary["kernel"])
    result = boot(work / "out", kernel_version, work, WARMUP_ROUNDS + rounds)
    lines = script_lines(result.console)
    if "cost: done" not in lines:
        sys.exit(f"the guest did not finish ({result.stopped or result.returncode}):\n"
                 + result.console[-3000:])  # fmt: skip
    runs = parse_runs(lines)
    loader = shipped_loader(Arch.X86_64)
    qemu = subprocess.run([result.command[0], "--version"], capture_output=True, text=True)
    return {
        "command": f".venv/bin/python -m bench.loader_cost --rounds {rounds} --write",
        "date": started,
        "machine": f"at the start: {before}; at the end: {machine()}",
        "clock": CLOCK,
        "rounds": rounds,
        "warmup_rounds": WARMUP_ROUNDS,
        "guest_kernel": _said(lines, r"cost: guest kernel (\S+)$"),
        "capture_kernel": kernel_version,
        "kexec_tools": _said(lines, r"cost: (kexec-tools \S+)"),
        "kdump_load_sha256": hashlib.sha256(loader.read_bytes()).hexdigest(),
        "qemu": qemu.stdout.splitlines()[0] if qemu.stdout else "unknown",
        "qemu_command": [word.replace(str(work), "$WORK") for word in result.command],
        "boot_seconds": round(result.seconds, 1),
        "console_sha256": hashlib.sha256(result.console.encode()).hexdigest(),
        "console_lines": [line.replace(str(work), "$WORK") for line in lines],
        "runs": [run.record() for run in runs],
    }


def report(evidence: dict[str, Any]) -> list[str]:
    """Every run, each loader's median, the two goals."""
    lines = [f"guest {evidence['guest_kernel']}, {evidence['kexec_tools']}, "
             f"{evidence['rounds']} rounds after {evidence['warmup_rounds']} warm-up"]  # fmt: skip
    for run in evidence["runs"]:
        state = "loaded" if run["loaded"] else "FAILED"
        lines.append(f"  round {run['round']} {run['tool']:<12} {run['milliseconds']:9.1f} ms "
                     f"{state}")  # fmt: skip
    middle = medians([Run(**run) for run in evidence["runs"]], evidence["warmup_rounds"])
    lines += [f"  median {tool:<12} {middle[tool]:9.1f} ms" for tool in TOOLS]
    lines += [f"  {goal}: {measured} (goal {anchor}): {verdict}"
              for goal, measured, anchor, verdict in goal_rows(evidence)]  # fmt: skip
    return lines


def run(rounds: int = ROUNDS) -> dict[str, Any]:
    """One measurement in a scratch directory; exits with why when the host lacks a tool."""
    missing = harness.missing_host_tools()
    if missing:
        sys.exit(f"install {missing} (./bootstrap test does)")
    with scratch("kdump-loader-cost.") as work:
        return measure(work, rounds)


def store_evidence(evidence: dict[str, Any]) -> None:
    RESULTS.write_text(json.dumps(evidence, indent=1) + "\n")


def store(evidence: dict[str, Any]) -> None:
    """The evidence, and docs/performance.md's section made from it."""
    store_evidence(evidence)
    DOC.write_text(replace_section(DOC.read_text(), section(evidence)))
    print(f"wrote {RESULTS.relative_to(REPO)} and {DOC.relative_to(REPO)}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds (default 5)")
    parser.add_argument("--write", action="store_true", help=f"store in {RESULTS.name} and docs")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    evidence = run(args.rounds)
    print("\n".join(report(evidence)))
    if args.write:
        store(evidence)


if __name__ == "__main__":
    main(sys.argv[1:])
