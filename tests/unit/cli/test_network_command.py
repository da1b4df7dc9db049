"""`kdump-build network`: the host's link to a dump server as recipe keys, through the
CLI (issue 22, item 3); a configuration the capture cannot do is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

from builder.recipe.parse import load_recipe
from tests.conftest import run_cli

SERVER = "10.0.2.2"


def _root(tmp_path: Path, interfaces: str) -> Path:
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text(interfaces)
    for name, mac in (("eth0", "52:54:00:00:00:01"), ("eth1", "52:54:00:00:00:02")):
        (tmp_path / "sys/class/net" / name).mkdir(parents=True)
        (tmp_path / "sys/class/net" / name / "address").write_text(mac + "\n")
    return tmp_path


def test_the_keys_go_into_a_recipe_as_printed(tmp_path: Path) -> None:
    root = _root(tmp_path, "iface bond0 inet dhcp\n  bond-slaves eth0 eth1\n"
                           "  bond-mode 802.3ad\n")  # fmt: skip
    result = run_cli("network", SERVER, "--interface", "bond0", "--root", str(root))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == (
        f"# The link to {SERVER}, from {root}/etc/network/interfaces:1\n"
        'network = "dhcp"\ninterface = "bond0"\nbond = "802.3ad"\n'
        'bond_ports = ["52:54:00:00:00:01", "52:54:00:00:00:02"]\n'
    )
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'[source]\nroot = "/"\n[dump]\ntarget = "nfs"\nnfs = "{SERVER}:/srv"\n{result.stdout}'
    )
    # The recipe's own checks take them as printed.
    assert load_recipe(recipe).dump.options.to_json()["bond"] == "802.3ad"


def test_a_bond_mode_the_capture_cannot_do_is_one_line(tmp_path: Path) -> None:
    root = _root(tmp_path, "iface bond0 inet dhcp\n  bond-slaves eth0 eth1\n")
    result = run_cli("network", SERVER, "--interface", "bond0", "--root", str(root))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"kdump-build: error: {root}/etc/network/interfaces:1: bond-mode: 'balance-rr': the "
        "capture bonds only active-backup and 802.3ad\n"
    )
