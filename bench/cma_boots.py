"""Measurement boots for `crashkernel=,cma` and `initramfs_options` on Debian 14's kernel.

    flock /work/notes/vm.lock .venv/bin/python -m bench.cma_boots OUTDIR \\
        base96:96M: split:72M+24M,cma: tight80:80M: "tight80opt:80M:initramfs_options=size=90%"

Each argument is NAME:CRASHKERNEL:CAPTURE_OPTION: the Debian 13 recipe with
`source.release = "forky"` (and CAPTURE_OPTION appended to the capture's
command line), its kernel booted as the main one of the 1 GiB guest of
tests/vm/test_next_kernels.py with `crashkernel=` each `+`-separated value,
loaded with `kdump-build load`, crashed. It prints whether the dump was saved
and the console lines that say what each side had (MemTotal, CmaTotal,
crash_size, the capture's `Memory:` line, out-of-memory and initramfs lines),
and writes them to OUTDIR/NAME.txt; the console stays in OUTDIR/NAME/.
Not a test: a failing capture is a result here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.vm import test_next_kernels as guest

KEPT = re.compile(
    r"main: (MemTotal|CmaTotal|crash_size|kexec/crash_cma)|Command line|dump saved|"
    r"Out of memory|oom|nitramfs|Kernel panic|Memory:"
)


def boot(outdir: Path, name: str, crashkernel: str, option: str) -> list[str]:
    tmp = outdir / name
    tmp.mkdir(parents=True)
    changes: dict[str, dict[str, object]] = {"source": {"release": "forky"}}
    if option:
        changes["kernel"] = {"cmdline_append": ["console=ttyS0", "no_timer_check", option]}
    built, summary = guest._build(tmp, changes)
    words = " ".join(f"crashkernel={value}" for value in crashkernel.split("+"))
    try:
        console, _files = guest._crash(built, str(summary["kernel"]), "forky", tmp, words)
    except AssertionError:  # the guest did not power off cleanly: the console says why
        console = (tmp / "console.log").read_text(errors="replace")
    saved = "saved" if "kdump: dump saved to" in console else "NOT SAVED"
    kept = [line.rstrip("\r") for line in console.splitlines() if KEPT.search(line)]
    return [f"{name} {words} {option or '-'}: {saved}", *kept]


def main(argv: list[str]) -> None:
    outdir = Path(argv[0])
    for spec in argv[1:]:
        name, crashkernel, option = spec.split(":", 2)
        lines = boot(outdir, name, crashkernel, option)
        (outdir / f"{name}.txt").write_text("\n".join(lines) + "\n")
        print("\n    ".join(lines), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
