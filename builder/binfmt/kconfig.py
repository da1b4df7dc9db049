"""Kernel `.config` text (scripts/kconfig's output format) as a mapping of options.

`CONFIG_X=value` lines give the value (string values without their quotes);
`# CONFIG_X is not set` lines give "n", so an option the config says is off
can be told from one it does not mention (an older kernel that lacks it).
"""

from __future__ import annotations

import re

_CONFIG_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_CONFIG_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_kernel_config(text: str) -> dict[str, str]:
    """Kernel `.config` text to a mapping; `# CONFIG_X is not set` maps to "n".

    >>> parse_kernel_config('CONFIG_KEXEC=y\\n# CONFIG_KEXEC_SIG is not set\\nCONFIG_X=""')
    {'CONFIG_KEXEC': 'y', 'CONFIG_KEXEC_SIG': 'n', 'CONFIG_X': ''}
    """
    options: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if match := _CONFIG_LINE.match(line):
            options[match.group(1)] = match.group(2).strip('"')
        elif match := _CONFIG_UNSET.match(line):
            options[match.group(1)] = "n"
    return options
