"""Kernel .config parsing."""

from __future__ import annotations

from builder.binfmt.kconfig import parse_kernel_config
from tests.support.kernels import debian_kernel


def test_parse_kernel_config() -> None:
    text = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="text"\n# comment\nCONFIG_D=m\n'
    assert parse_kernel_config(text) == {
        "CONFIG_A": "y",
        "CONFIG_B": "n",
        "CONFIG_C": "text",
        "CONFIG_D": "m",
    }


def test_debian_config_matches_grep() -> None:
    """Every `=y` line of a real Debian config, found independently with a plain split."""
    config = debian_kernel("x86_64").config
    options = parse_kernel_config(config)
    enabled = {line.split("=", 1)[0] for line in config.splitlines() if line.endswith("=y")}
    assert enabled == {key for key, value in options.items() if value == "y"}
    assert options["CONFIG_CRASH_DUMP"] == "y"
    assert sum(value == "n" for value in options.values()) == config.count(" is not set\n")
