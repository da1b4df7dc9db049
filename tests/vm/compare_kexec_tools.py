"""Our placement beside kexec-tools' (`kexec -p -d`) in one guest, for the same inputs.

    .venv/bin/python -m tests.vm.compare_kexec_tools CAPTURE_OUTDIR WORKDIR

Boots the default kernel with crashkernel=192M, mounts the host root over
9p, saves the guest's sysfs values with `kdump-build capture-sysfs`, loads
with our loader (`--verbose` prints our segments), unloads, then loads the
same kernel, initrd and command line with `kexec -p -d`. Prints both
listings; WORKDIR keeps the console log and the captured sysfs directory.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from tests.support.paths import REPO
from tests.vm import harness


def main(argv: list[str]) -> int:
    capture, work = Path(argv[0]).absolute(), Path(argv[1]).absolute()
    work.mkdir(parents=True, exist_ok=True)
    python = shlex.quote(sys.executable)
    q = shlex.quote
    body = f"""
mount -t tmpfs tmpfs /host/run
mount -t tmpfs tmpfs /host/mnt
echo "=== ours"
in_host "{python} -m builder.cli capture-sysfs /mnt/sysfs"
in_host "tar -C /mnt -cf - sysfs | base64 > /mnt/sysfs.b64"
in_host "{python} -m builder.cli load {q(str(capture))} --method segments --verbose"
echo "=== sysfs"
cat /host/mnt/sysfs.b64
echo "=== end sysfs"
in_host "{python} -m builder.cli unload --method segments"
echo "=== kexec-tools"
kexec -p -d /host{q(str(capture / "vmlinuz"))} --initrd=/host{q(str(capture / "initrd.img"))} \\
    --command-line="$(cat /host{q(str(capture / "cmdline.txt"))})" 2>&1 | grep -v "^sym\\|^R_X86"
echo "=== end"
"""
    version = json.loads((capture / "manifest.json").read_text())["kernel"]["version"]
    initrd = work / "main-initrd.img"
    initrd.write_bytes(harness.build_hostroot_initrd(version, body, REPO, kexec=True))
    boot = harness.run_qemu(
        capture / "vmlinuz",
        initrd,
        "console=ttyS0 crashkernel=192M",
        None,
        memory="1G",
        cpus=2,
        log=work / "console.log",
        share_host_root=True,
        timeout=900,
    )
    lines = [line.rstrip("\r") for line in boot.console.splitlines() if not line.startswith("[")]
    text = "\n".join(lines)
    print(text.split("=== sysfs")[0])
    print(text.split("=== kexec-tools", 1)[-1].split("=== end")[0])
    return 0 if boot.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
