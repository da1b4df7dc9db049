"""The files `enable` installs for systemd and the kernel packages, as text.

- the unit: at boot, `kdump-build boot` prunes old dumps, rebuilds the capture of
  the running kernel if its inputs changed, and loads it; stopping it unloads.
  A kernel without a crash reservation skips it (ExecCondition), with a journal line.
- Debian's /etc/kernel/postinst.d and postrm.d hooks, which the kernel packages run
  with the version as $1 through `run-parts --exit-on-error`: a failing hook would
  abort the kernel's installation, so they report and exit 0.
- a kernel-install plugin (`add|remove VERSION ENTRY-DIR [IMAGE]`) for systems
  whose kernels are installed through systemd's kernel-install.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from builder.host.managed import marker_line

# Runs before the service: the journal says why when there is nothing to load.
# /sys/kernel/kexec/crash_size since 6.19, the deprecated flat file before.
# ($$ and %% are systemd's escapes for $ and %.)
NO_RESERVATION_CHECK = (
    "/bin/sh -c '[ \"$$(cat /sys/kernel/kexec/crash_size 2>/dev/null "
    '|| cat /sys/kernel/kexec_crash_size 2>/dev/null || echo 0)" != 0 ] '
    '|| { echo "kdump-build: this kernel has no crash reservation (no crashkernel= on '
    "its command line): nothing to load; kdump-build status says what to add\"; exit 1; }'"
)


def kdump_build_command() -> str:
    """The absolute command that runs this kdump-build (its console script, else -m)."""
    script = Path(sys.executable).parent / "kdump-build"
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m builder.cli"


def unit_text(command: str) -> str:
    return f"""\
{marker_line()}[Unit]
Description=kdump-build: load the crash capture kernel
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecCondition={NO_RESERVATION_CHECK}
ExecStart={command} boot
ExecStop={command} unload
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""


def postinst_hook_text(command: str) -> str:
    return f"""\
#!/bin/sh
{marker_line()}# Debian's kernel packages run this with the kernel version and its image path.
# It never fails: run-parts --exit-on-error would abort the kernel's installation.
{command} kernel-installed "$1" \\
    || echo "kdump-build: no capture built for kernel $1; the service retries at boot" >&2
exit 0
"""


def postrm_hook_text(command: str) -> str:
    return f"""\
#!/bin/sh
{marker_line()}# Debian's kernel packages run this on remove and again on purge.
{command} kernel-removed "$1" || echo "kdump-build: could not remove the capture of $1" >&2
exit 0
"""


def install_plugin_text(command: str) -> str:
    return f"""\
#!/bin/sh
{marker_line()}# systemd's kernel-install: COMMAND VERSION ENTRY-DIR [IMAGE].
case "$1" in
    add) {command} kernel-installed "$2" ${{4:+--image "$4"}} \\
        || echo "kdump-build: no capture built for kernel $2" >&2 ;;
    remove) {command} kernel-removed "$2" \\
        || echo "kdump-build: could not remove the capture of $2" >&2 ;;
esac
exit 0
"""
