"""The files `enable` installs for systemd and the kernel packages, as text.

- the unit: at boot, `kdump-build boot` prunes old dumps, rebuilds the capture of
  the running kernel if its inputs changed, and loads it; stopping it unloads.
  A kernel without a crash reservation skips it (ExecCondition), with a journal line.
- Debian's /etc/kernel/postinst.d and postrm.d hooks, which the kernel packages run
  with the version as $1 through `run-parts --exit-on-error`: a failing hook would
  abort the kernel's installation, so they report and exit 0.
- a kernel-install plugin (`add|remove VERSION ENTRY-DIR [IMAGE]`) for systems
  whose kernels are installed through systemd's kernel-install.
- a udev rule that reloads the unit when a CPU or a memory block goes online or
  offline, where the kernel does not rewrite the loaded ELF core header itself.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from builder.host.managed import marker_line
from builder.host.paths import UDEV_RULE_NAME, UNIT_NAME
from builder.kexecfs import KexecFile

# Runs before the service: the journal says why when there is nothing to load.
# The reservation's size from where builder/kexecfs.py reads it (the 6.19 file,
# then the deprecated flat one). ($$ and %% are systemd's escapes for $ and %.)
NO_RESERVATION_CHECK = (
    f'/bin/sh -c \'[ "$$({KexecFile.CRASH_SIZE.shell_read("0")})" != 0 ] '
    '|| { echo "kdump-build: this kernel has no crash reservation (no crashkernel= on '
    "its command line): nothing to load; kdump-build status says what to add\"; exit 1; }'"
)


# Installed by the Debian package (debian/): the package owns the unit and the hooks,
# `enable` only switches them on. Its hooks do nothing until then, and nothing once the
# package is removed (conffiles in /etc/kernel stay until purge).
PACKAGED_COMMAND = "/usr/bin/kdump-build"
PACKAGED_GUARD = (
    f"[ -x {PACKAGED_COMMAND} ] && [ -e /etc/kdump-build/enabled ] || exit 0  # not enabled\n"
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
Documentation=man:kdump-build(1)
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecCondition={NO_RESERVATION_CHECK}
ExecStart={command} boot
ExecStop={command} unload
# The udev rule's reload after CPU or memory hotplug (a new ELF core header).
ExecReload={command} reload
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""


def postinst_hook_text(command: str, guard: str = "") -> str:
    return f"""\
#!/bin/sh
{marker_line()}{guard}# Debian's kernel packages run this with the kernel version and image path.
# It never fails: run-parts --exit-on-error would abort the kernel's installation.
{command} kernel-installed "$1" \\
    || echo "kdump-build: no capture built for kernel $1; the service retries at boot" >&2
exit 0
"""


def postrm_hook_text(command: str, guard: str = "") -> str:
    return f"""\
#!/bin/sh
{marker_line()}{guard}# Debian's kernel packages run this on remove and again on purge.
{command} kernel-removed "$1" || echo "kdump-build: could not remove the capture of $1" >&2
exit 0
"""


def install_plugin_text(command: str, guard: str = "") -> str:
    return f"""\
#!/bin/sh
{marker_line()}{guard}# systemd's kernel-install: COMMAND VERSION ENTRY-DIR [IMAGE].
case "$1" in
    add) {command} kernel-installed "$2" ${{4:+--image "$4"}} \\
        || echo "kdump-build: no capture built for kernel $2" >&2 ;;
    remove) {command} kernel-removed "$2" \\
        || echo "kdump-build: could not remove the capture of $2" >&2 ;;
esac
exit 0
"""


# The events that change what a crash can meet: a CPU or a memory block going online or
# offline (a hot-added one comes online after its `add`, a removed one goes offline before
# its `remove`). udev's coldplug at boot replays `add` for every device, never these.
HOTPLUG_SUBSYSTEMS = ("cpu", "memory")
HOTPLUG_ACTIONS = ("online", "offline")


def udev_rule_text(unit: str = UNIT_NAME) -> str:
    """Reload the active unit after CPU or memory hotplug, unless the kernel does it.

    `crash_hotplug` (an attribute of the cpu and memory roots, the parents of every
    cpuN and memoryN) reads 1 only while the loaded image is one the kernel rewrites
    (CONFIG_CRASH_HOTPLUG and a load that asked for it); a kernel without the feature
    has no such file. `try-reload-or-restart` does nothing while the unit is not active
    (the package installed but not enabled, or its boot-time start still running), and
    runs ExecReload otherwise: systemd queues it behind a reload in progress, so no load
    is ever killed. `--no-block`: udev's worker only queues the job.
    """
    subsystems, actions = "|".join(HOTPLUG_SUBSYSTEMS), "|".join(HOTPLUG_ACTIONS)
    return f"""\
{marker_line()}# A CPU or memory going online or offline: a loaded ELF core header may be stale.
SUBSYSTEM=="{subsystems}", ACTION=="{actions}", GOTO="kdump_build_reload"
GOTO="kdump_build_end"
LABEL="kdump_build_reload"
# The kernel rewrites the header of this load itself.
ATTRS{{crash_hotplug}}=="1", GOTO="kdump_build_end"
RUN+="/bin/systemctl --no-block try-reload-or-restart {unit}"
LABEL="kdump_build_end"
"""


def packaged_files() -> dict[str, tuple[str, int]]:
    """The Debian package's unit and hooks (debian/), by path in the package, with modes."""
    command, guard = PACKAGED_COMMAND, PACKAGED_GUARD
    # The second call, at the kernel's purge, finds no capture: nothing to say then.
    once = '[ -e "/var/lib/kdump-build/$1" ] || exit 0  # removed already\n'
    files = {
        "usr/lib/systemd/system/kdump-build.service": (unit_text(command), 0o644),
        "etc/kernel/postinst.d/kdump-build": (postinst_hook_text(command, guard), 0o755),
        "etc/kernel/postrm.d/kdump-build": (postrm_hook_text(command, guard + once), 0o755),
        "usr/lib/kernel/install.d/60-kdump-build.install": (
            install_plugin_text(command, guard),
            0o755,
        ),
        f"usr/lib/udev/rules.d/{UDEV_RULE_NAME}": (udev_rule_text(), 0o644),
    }
    owner = "# Installed by the kdump-build package; kdump-build enable switches it on.\n"
    return {path: (text.replace(marker_line(), owner), mode)
            for path, (text, mode) in files.items()}  # fmt: skip
