"""The key a target that logs in (the ssh target) uses when `enable --target` is given
no `--ssh-key`: one of the capture's own, made once (as kdump-tools' `kdump-config
propagate` makes its own), whose public line enable prints for the server's
authorized_keys.

It is OpenSSH's ed25519 format from ssh-keygen: dropbear's dbclient (Debian 12's
2022.83) does not read that format itself ("Exited: String too long"), but every build
converts the key to dropbear's own (the ssh target's `dropbear_key`). An existing
file at its place is used as it is, never replaced: it is the key of an earlier enable,
or the admin's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import HostError, RecipeError
from builder.recipe.dump import TargetKind

KEY_NAME = "kdump_id_ed25519"


@dataclass(frozen=True)
class CaptureKey:
    """The key the capture logs in with, and whether this enable made it."""

    path: Path
    made: bool


def capture_key_path(config_dir: Path) -> Path:
    """Where the capture's own key lives: /etc/kdump-build/kdump_id_ed25519."""
    return config_dir / KEY_NAME


def ensure_capture_key(config_dir: Path) -> CaptureKey:
    """The capture's own key, made now (mode 0600) when there is none at its place."""
    path = capture_key_path(config_dir)
    if path.exists() or path.is_symlink():
        return CaptureKey(path, made=False)
    program = shutil.which("ssh-keygen")
    if program is None:
        raise HostError("--ssh-key: not given, and there is no ssh-keygen here to make the "
                        "capture a key of its own: apt-get install openssh-client, or give "
                        "--ssh-key KEY (an unencrypted ed25519 key only root can "
                        "read)")  # fmt: skip
    config_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{KEY_NAME}.", dir=config_dir) as staging:
        made = Path(staging) / KEY_NAME
        result = subprocess.run(
            [program, "-q", "-t", "ed25519", "-N", "", "-C", key_comment(), "-f", str(made)],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise HostError(f"--ssh-key: not given, and ssh-keygen could not make {path}: {last}")
        made.chmod(0o600)
        try:
            os.link(made, path)  # fails rather than replace a file put there meanwhile
        except FileExistsError:
            return CaptureKey(path, made=False)
    return CaptureKey(path, made=True)


def forget_made_key(key: CaptureKey) -> None:
    """Remove the key this enable made, when enable refused before using it."""
    if key.made:
        key.path.unlink(missing_ok=True)


def key_comment() -> str:
    """The comment of the key's public line: whose capture logs in with it."""
    return f"kdump-build@{socket.gethostname()}"


def say_public_key(target: TargetKind, key: Path, destination: str,
                   say: Callable[[str], None]) -> None:  # fmt: skip
    """Tell the admin the line the server's authorized_keys needs (for any key: a given
    one may not be there yet either)."""
    try:
        line = target.login_key_line(key.read_bytes(), f"--ssh-key: {key}", key_comment())
    except (OSError, RecipeError):
        return  # enable_keys has refused such a key already, naming why
    if line is None:
        return
    user, _, server = destination.partition("@")
    say(f"ssh key: {key}; the capture logs in to {destination} with it: add this line to "
        f"~{user}/.ssh/authorized_keys on {server} (once):")  # fmt: skip
    say(f"  {line}")
