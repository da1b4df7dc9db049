"""The capture's assembly of md arrays and the LVM volume (builder/targets/blockstack.sh),
run in the initrd's busybox sh with mdadm and lvm stand-ins that record their arguments
and answer as the real ones do (`mdadm --examine --scan --verbose`, an LV's dm UUID)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.targets import blockstack

MD = "6b3e1c2a:90d4f75e:1a2b3c4d:5e6f7a8b"
LV = "aB3dE5-gH7j-K9mN-1pQ3-sT5v-W7yZ-1bC3dF"
VG_COMPACT = "Jx2l8bQ0WqK3mRzT1vYcN5sA7dE9fGhU"

EXAMINE = f"""ARRAY /dev/md/crash  level=raid1 metadata=1.2 num-devices=2 UUID={MD} name=kdump:crash
   devices={{devices}}
ARRAY /dev/md/other  level=raid1 metadata=1.2 num-devices=2 UUID=00000000:00000000:00000000:00000000
   devices=/dev/vdc,/dev/vdd
"""


def run_stack(busybox: Path, tmp_path: Path, members: str | None, *, lv: str = "",
              lvm_activates: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """assemble_stack with stand-ins; `members` are the devices= the examine scan lists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    sys_block = tmp_path / "sys-block"
    sys_block.mkdir()
    # None: no md array in the recipe; "": an array none of whose members is present.
    examine = EXAMINE.format(devices=members) if members else ""
    (tmp_path / "examine").write_text(examine)
    activate = (f'mkdir -p {sys_block}/dm-0/dm && echo LVM-{VG_COMPACT}{LV.replace("-", "")} '
                f"> {sys_block}/dm-0/dm/uuid") if lvm_activates else "true"  # fmt: skip
    stand_ins = {
        "mdadm": f'echo "mdadm $*" >> {calls}\n'
        f'case "$*" in *--examine*) cat {tmp_path}/examine ;; esac\n',
        "lvm": f'echo "lvm $*" >> {calls}\n{activate}\n',
        "sleep": "true\n",
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!{busybox} sh\n{body}")
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "run.sh"
    script.write_bytes(
        blockstack.shell_part()
        + f"""
SYS_BLOCK={sys_block}
log() {{ echo "kdump: $*"; }}
fail() {{ echo "kdump: FAILED: $*"; exit 1; }}
KDUMP_DEVICE_TIMEOUT=3
KDUMP_MD_ARRAYS="{MD if members is not None else ""}"
KDUMP_LVM_VOLUME="{lv}"
assemble_stack
echo "assembled"
""".encode()
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run([str(busybox), "sh", str(script)], capture_output=True, text=True,
                            env=env, check=False)  # fmt: skip
    recorded = calls.read_text().splitlines() if calls.exists() else []
    result.stdout += "".join(f"call: {line}\n" for line in recorded)
    return result


def test_a_whole_array_starts_at_once(busybox: Path, tmp_path: Path) -> None:
    result = run_stack(busybox, tmp_path, "/dev/vda,/dev/vdb")
    assert "assembled" in result.stdout, result.stdout + result.stderr
    assert "degraded" not in result.stdout
    assert f"call: mdadm --assemble --scan --run --config=partitions --uuid={MD}" in result.stdout
    # Only the named array is assembled, and the scan ran once: nothing waited.
    assert result.stdout.count("call: mdadm --examine") == 1, result.stdout


def test_an_array_missing_a_member_waits_then_starts_degraded(
    busybox: Path, tmp_path: Path
) -> None:
    result = run_stack(busybox, tmp_path, "/dev/vda")
    assert f"md array {MD}: 1 of its 2 members present, starting it degraded" in result.stdout
    assert result.stdout.count("call: mdadm --examine") == 4, result.stdout  # 0..3 s
    assert "assembled" in result.stdout


def test_an_array_with_no_member_fails_in_one_line(busybox: Path, tmp_path: Path) -> None:
    result = run_stack(busybox, tmp_path, "")
    assert result.returncode == 1
    assert f"kdump: FAILED: md array {MD}: no member appeared in 3s" in result.stdout
    assert "--assemble" not in result.stdout


def test_only_the_volume_is_activated_by_uuid(busybox: Path, tmp_path: Path) -> None:
    result = run_stack(busybox, tmp_path, None, lv=LV)
    assert f"kdump: LVM volume {LV} active" in result.stdout, result.stdout + result.stderr
    (call,) = [line for line in result.stdout.splitlines() if line.startswith("call: lvm")]
    assert f"--activate y --select lv_uuid={LV}" in call
    for setting in ("obtain_device_list_from_udev = 0", "udev_sync = 0", "udev_rules = 0"):
        assert setting in call


def test_a_volume_that_never_appears_fails(busybox: Path, tmp_path: Path) -> None:
    result = run_stack(busybox, tmp_path, None, lv=LV, lvm_activates=False)
    assert result.returncode == 1
    assert f"kdump: FAILED: LVM volume {LV} was not activated in 3s" in result.stdout


@pytest.mark.parametrize("members", ["/dev/vda,/dev/vdb"])
def test_arrays_come_before_the_volume(busybox: Path, tmp_path: Path, members: str) -> None:
    result = run_stack(busybox, tmp_path, members, lv=LV)
    calls = [line for line in result.stdout.splitlines() if line.startswith("call:")]
    assert calls[-2].startswith("call: mdadm --assemble") and calls[-1].startswith("call: lvm")
