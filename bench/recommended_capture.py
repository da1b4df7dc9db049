"""The Debian 13 capture docs/makedumpfile.md recommends, dumped for real once.

    python -m bench.recommended_capture [CRASHKERNEL]   # default 80M

The Debian 13 recipe with `makedumpfile/forky` and `dump.compression =
"zstd"` (the bundled recipe has both since the x86_64-6.12 calibration was
booted with them, 2026-12-07), on the same 1 GiB, 2-vCPU guest with the workload as
`bench.vmcore_capture` (Debian 13's 6.12), at 80M: the smallest reservation the
x86_64-6.12 calibration measured for the 1.7.6 + lzo capture on that guest
shape, and again for this one.
The dump's size, what makedumpfile said, and the crash log read back with
Debian 14's makedumpfile go to bench/evidence/makedumpfile-recommended.json.
Hold /work/notes/vm.lock (or any machine-wide lock) around it on a shared machine.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from bench.makedumpfile_roots import prepare_root
from bench.vmcore_capture import GUESTS, crash_cycle
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "evidence" / "makedumpfile-recommended.json"


def recommended_changes() -> dict[str, dict[str, object]]:
    """The keys the recommendation sets in recipes/qemu-x86_64-trixie.toml (which has
    them now: the same keys again)."""
    recipe = GUESTS["6.12"].recipe
    packages = tomllib.loads(recipe.read_text())["source"]["packages"]
    picked = ["makedumpfile/forky" if name.split("/")[0] == "makedumpfile" else name
              for name in packages]  # fmt: skip
    return {"source": {"packages": picked}, "dump": {"compression": "zstd"}}


def measure(crashkernel: str, work: Path) -> dict[str, object]:
    changes = recommended_changes()
    cycle = crash_cycle(GUESTS["6.12"], changes, crashkernel, work)
    (vmcore,) = [path for path in cycle.files if path.name == "vmcore"]
    said = (vmcore.parent / "collector.log").read_text(errors="replace")
    dmesg = work / "dmesg.txt"
    forky = prepare_root("forky")
    read = subprocess.run([*forky.command(), "--dump-dmesg", str(vmcore), str(dmesg)],
                          capture_output=True, check=False)  # fmt: skip
    manifest = json.loads((cycle.outdir / "manifest.json").read_text())
    versions = {p["name"]: p["version"] for p in manifest["packages"]}
    console = cycle.boot.console
    return {
        "recipe": GUESTS["6.12"].recipe.relative_to(REPO).as_posix(),
        "recipe_changes": changes,
        "kernel": cycle.kernel,
        "makedumpfile": versions["makedumpfile"],
        "libc6": versions["libc6"],
        "crashkernel": crashkernel,
        "qemu_command": [word.replace(str(work), "$WORK") for word in cycle.boot.command],
        "console_sha256": hashlib.sha256(console.encode()).hexdigest(),
        "decisive": [
            line.strip()
            for line in console.splitlines()
            if line.startswith(("main: ", "workload: ", "kdump: "))
        ],
        "dump_size": vmcore.stat().st_size,
        "collector_log": said.splitlines(),
        "dmesg_readable": read.returncode == 0
        and "sysrq triggered crash" in dmesg.read_text(errors="replace"),
    }


def main(argv: list[str]) -> None:
    crashkernel = argv[0] if argv else "80M"
    with tempfile.TemporaryDirectory(prefix="mdf-recommended-") as scratch:
        record = measure(crashkernel, Path(scratch))
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{record['kernel']} at crashkernel={crashkernel}: {record['makedumpfile']} zstd dump "
          f"{record['dump_size']:,} bytes, log read back: {record['dmesg_readable']}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
