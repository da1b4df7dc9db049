"""Save one full ELF vmcore per kernel, for makedumpfile to be measured on offline.

    python -m bench.vmcore_capture [6.1 6.12 7.x]

Each kernel boots once on a 1 GiB x86_64 guest (TCG) whose memory holds page
cache, user pages and non-zero free pages (`bench.guest_workload`), loads a
capture built from the bundled recipe of its release with `dump.collector =
"copy"` (the whole /proc/vmcore, nothing excluded) through `kdump-build load`,
and crashes. The vmcore and a record of the boot (the qemu command, the
packages, the console's digest and decisive lines, the vmcore's sha256) go to
~/.cache/kdump-build/bench-vmcores/ (not the repository: 1 GiB each);
`bench.makedumpfile_matrix` reads them. Hold /work/notes/vm.lock (or any
machine-wide lock) around it on a shared machine.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import kdump_build_command, run
from tests.support import recipes
from tests.support.paths import REPO
from tests.support.qemu import Boot
from tests.vm import harness

VMCORES = Path.home() / ".cache" / "kdump-build" / "bench-vmcores"
TRIXIE_RECIPE = REPO / "recipes" / "qemu-x86_64-trixie.toml"
DEFAULT_RECIPE = REPO / "recipes" / "qemu-x86_64.toml"
# The capture saves all of /proc/vmcore: nothing excluded, nothing compressed.
COPY: dict[str, dict[str, object]] = {"dump": {"collector": "copy"}}
# The dump disk holds the whole 1 GiB of /proc/vmcore with its headers.
DISK_MIB = 1400


@dataclass(frozen=True)
class Guest:
    """A kernel to dump: the recipe it comes from, the keys changed, the main side's release."""

    label: str
    recipe: Path
    changes: dict[str, dict[str, object]]
    release: str  # "" the host's (Debian 12)
    main_packages: tuple[str, ...]


GUESTS = {
    guest.label: guest
    for guest in (
        Guest("6.1", DEFAULT_RECIPE, {}, "", ("busybox-static",)),
        Guest("6.12", TRIXIE_RECIPE, {}, "trixie", ("busybox-static", "base-files")),
        Guest("7.x", TRIXIE_RECIPE, {"source": {"release": "forky"}}, "forky",
              ("busybox-static", "base-files")),
    )
}  # fmt: skip

BODY = """
mount -t tmpfs tmpfs /host/run
in_host "{python} -m bench.guest_workload /run/workload-ready &"
waited=0
until [ -s /host/run/workload-ready ]; do
    sleep 5
    waited=$((waited + 5))
    if [ "$waited" -ge 1500 ]; then
        echo "main: workload not ready"
        poweroff -f
    fi
done
echo "main: workload ready after ${{waited}}s"
grep -E '^(MemFree|Cached|AnonPages):' /proc/meminfo | sed 's/^/main: /'
if ! in_host "{python} -m builder.cli load {outdir} --method segments"; then
    echo "main: load failed"
    poweroff -f
fi
echo c > /proc/sysrq-trigger
echo "main: still alive after sysrq crash"
"""


def _build(
    guest: Guest, changes: dict[str, dict[str, object]], work: Path
) -> tuple[Path, dict[str, object]]:
    recipe = work / "recipe.toml"
    recipe.write_text(recipes.recipe_text({**guest.changes, **changes}, base=guest.recipe))
    outdir = work / "capture"
    result = run([*kdump_build_command(), str(recipe), "-o", str(outdir), "--json"], cwd=REPO)
    summary: dict[str, object] = json.loads(result.stdout)
    return outdir, summary


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Cycle:
    """One crash cycle of a guest with the workload: the build, the boot, the dump disk's files."""

    outdir: Path
    kernel: str
    boot: Boot
    files: list[Path]


def crash_cycle(
    guest: Guest, changes: dict[str, dict[str, object]], crashkernel: str, work: Path
) -> Cycle:
    """Build the guest's recipe with `changes`, boot with the workload, load, crash, read back."""
    outdir, summary = _build(guest, changes, work)
    kernel = str(summary["kernel"])
    body = BODY.format(python=shlex.quote(sys.executable), outdir=shlex.quote(str(outdir)))
    init = harness.HOSTROOT_INIT.format(tag=harness.HOSTROOT_TAG, repo=REPO, body=body)
    initrd = work / "main-initrd.img"
    main_side = harness.ninep_initrd(kernel, init, guest.main_packages, release=guest.release)
    initrd.write_bytes(main_side)
    disk = work / "dump.img"
    harness.make_dump_disk(disk, DISK_MIB)
    append = f"console=ttyS0 crashkernel={crashkernel} no_timer_check"
    log = work / "console.log"
    boot = harness.run_qemu(outdir / "vmlinuz", initrd, append, disk, memory="1G", cpus=2, log=log,
                            share_host_root=True, timeout=3600)  # fmt: skip
    if boot.returncode != 0 or "kdump: dump saved to" not in boot.console:
        sys.exit(f"{guest.label}: no dump saved; console {log}:\n{boot.console[-3000:]}")
    files = harness.extract_disk(disk, work / "disk")
    disk.unlink()
    return Cycle(outdir, kernel, boot, files)


def capture(guest: Guest, work: Path) -> dict[str, object]:
    """Boot, crash and keep the full vmcore of one guest; its record."""
    cycle = crash_cycle(guest, COPY, "192M", work)
    outdir, kernel, boot, files = cycle.outdir, cycle.kernel, cycle.boot, cycle.files
    (saved,) = [path for path in files if path.name == "vmcore"]
    VMCORES.mkdir(parents=True, exist_ok=True)
    vmcore = VMCORES / f"{guest.label}.vmcore"
    shutil.move(saved, vmcore)
    manifest = json.loads((outdir / "manifest.json").read_text())
    lines = boot.console.splitlines()
    record: dict[str, object] = {
        "label": guest.label,
        "kernel": kernel,
        "kernel_packages": sorted(
            f"{p['name']} {p['version']}"
            for p in manifest["packages"]
            if p["name"].startswith("linux-")
        ),
        "recipe": guest.recipe.relative_to(REPO).as_posix(),
        "recipe_changes": {**guest.changes, **COPY},
        "qemu_command": [word.replace(str(work), "$WORK") for word in boot.command],
        "boot_seconds": round(boot.seconds, 1),
        "console_sha256": hashlib.sha256(boot.console.encode()).hexdigest(),
        "decisive": [
            line.strip()
            for line in lines
            if line.startswith(("main: ", "workload: ")) or "kdump: dump saved" in line
        ],
        "vmcore_size": vmcore.stat().st_size,
        "vmcore_sha256": _sha256(vmcore),
    }
    (VMCORES / f"{guest.label}.json").write_text(json.dumps(record, indent=1) + "\n")
    (VMCORES / f"{guest.label}.console.log").write_text(boot.console)
    return record


def main(argv: list[str]) -> None:
    labels = argv or list(GUESTS)
    unknown = [label for label in labels if label not in GUESTS]
    if unknown:
        sys.exit(f"unknown kernel {unknown[0]!r}; one of {', '.join(GUESTS)}")
    for label in labels:
        with tempfile.TemporaryDirectory(prefix=f"vmcore-{label}-") as scratch:
            record = capture(GUESTS[label], Path(scratch))
        print(f"{label}: {record['kernel']} vmcore {record['vmcore_size']:,} bytes "
              f"in {record['boot_seconds']} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
