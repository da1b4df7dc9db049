"""The dhcpv6 network mode (issue 22, item 3) on the real Debian packages: a recipe with
Debian 12's busybox (1.35, no udhcpc6) is refused in one line naming the key; the
Debian 13 recipe's (1.37) puts udhcpc6 and its lease script in the initrd;
`enable`'s link reader refuses DHCPv6 on a machine whose busybox has no udhcpc6.

The capture's DHCPv6 exchange itself runs in tests/vm/test_dhcpv6.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.binfmt.cpio import read_initrd
from builder.errors import HostError, RecipeError
from builder.host.netrecipe import network_dump_table, network_request
from builder.image.fetch import fetch_packages
from builder.image.packages import PackageRoot
from builder.image.pipeline import plan_build
from builder.image.programs import busybox_applets
from builder.recipe.dump import EnableRequest
from builder.recipe.parse import load_recipe
from builder.targets.network import UDHCPC6_SCRIPT_PATH
from tests.support.paths import DEFAULT_RECIPE
from tests.support.recipes import recipe_text

NFS = {"target": "nfs", "nfs": "[fd00::2]:/kdump", "interface": "eth0"}
# Debian 13's busybox-static (1.37) has udhcpc6; it ships /usr/bin/busybox only.
TRIXIE_BUSYBOX = "busybox-static/trixie"
TRIXIE_RECIPE = DEFAULT_RECIPE.parent / "qemu-x86_64-trixie.toml"


def _recipe(tmp_path: Path, network: str, debian13: bool) -> Path:
    """The default recipe (Debian 12) or the Debian 13 one, to an NFS server by `network`."""
    path = tmp_path / f"{network}-{'13' if debian13 else '12'}.toml"
    path.write_text(recipe_text(replace={"dump": {**NFS, "network": network}},
                                base=TRIXIE_RECIPE if debian13 else DEFAULT_RECIPE))  # fmt: skip
    return path


def test_debian12_busybox_is_refused_naming_the_key(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "dhcpv6", debian13=False)
    with pytest.raises(RecipeError) as raised:
        plan_build(load_recipe(recipe))
    assert str(raised.value) == (
        f"{recipe}: dump.network: needs busybox's udhcpc6 applet, and initrd.busybox "
        "(/bin/busybox) has none (busybox 1.37 and later have it: Debian 13's, with "
        "source.release = trixie and initrd.busybox = /usr/bin/busybox)"
    )


def test_debian13_busybox_brings_udhcpc6_and_its_script(tmp_path: Path) -> None:
    dhcpv6 = plan_build(load_recipe(_recipe(tmp_path, "dhcpv6", debian13=True)))
    slaac = plan_build(load_recipe(_recipe(tmp_path, "slaac", debian13=True)))
    found = {entry.path: entry for entry in read_initrd(dhcpv6.initrd)}
    # Debian 13 is merged-/usr: /bin is a link to usr/bin, where the applets are.
    assert found["/usr/bin/udhcpc6"].data == b"/usr/bin/busybox"
    script = found[UDHCPC6_SCRIPT_PATH]
    assert script.mode & 0o777 == 0o755 and b"ip -6 addr replace" in script.data
    without = {entry.path for entry in read_initrd(slaac.initrd)}
    # The mode's own cost over slaac with the same busybox: the script alone.
    assert set(found) - without == {UDHCPC6_SCRIPT_PATH}


def _machine(root: Path, busybox: bytes) -> Path:
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text("iface eth0 inet6 dhcp\n")
    (root / "sys/class/net/eth0").mkdir(parents=True)
    (root / "sys/class/net/eth0/address").write_text("52:54:00:00:00:01\n")
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(busybox)
    return root


def _busybox(name: str, path: str) -> bytes:
    packages = fetch_packages([name], "x86_64")
    return PackageRoot([package.path for package in packages]).read_bytes(path)


def test_enable_refuses_dhcpv6_with_a_busybox_without_udhcpc6(tmp_path: Path) -> None:
    old = _busybox("busybox-static", "/bin/busybox")
    assert "udhcpc6" not in busybox_applets(old) and "udhcpc" in busybox_applets(old)
    root = _machine(tmp_path / "bookworm", old)
    request = network_request("nfs", EnableRequest("[fd00::2]:/kdump"), "eth0")
    with pytest.raises(HostError) as raised:
        network_dump_table(request, root)
    assert str(raised.value) == (
        f"--to: {root}/etc/network/interfaces:1: the link takes its IPv6 address by DHCPv6 and "
        "this machine's busybox (/bin/busybox) has no udhcpc6 applet: install busybox-static "
        "from Debian 13 or later (1.37+), or give the link a static IPv6 address or SLAAC"
    )
    new = _busybox(TRIXIE_BUSYBOX, "/usr/bin/busybox")
    table = network_dump_table(request, _machine(tmp_path / "trixie", new))
    assert 'network = "dhcpv6"\ninterface = "eth0"\n' in table
