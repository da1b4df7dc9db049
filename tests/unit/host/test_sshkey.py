"""The capture's own ssh key (builder/host/sshkey.py) where enable cannot make one."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.sshkey import ensure_capture_key


def test_no_ssh_keygen_says_what_to_do_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # a machine without openssh-client
    config_dir = tmp_path / "etc/kdump-build"
    with pytest.raises(HostError) as refused:
        ensure_capture_key(config_dir)
    assert str(refused.value) == (
        "--ssh-key: not given, and there is no ssh-keygen here to make the capture a key of "
        "its own: apt-get install openssh-client, or give --ssh-key KEY (an unencrypted "
        "ed25519 key only root can read)"
    )
    assert not config_dir.exists()


def test_a_key_made_is_root_s_alone_and_a_second_call_keeps_it(tmp_path: Path) -> None:
    made = ensure_capture_key(tmp_path)
    assert made.made and made.path == tmp_path / "kdump_id_ed25519"
    assert made.path.stat().st_mode & 0o777 == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kdump_id_ed25519"]
    before = made.path.read_bytes()
    again = ensure_capture_key(tmp_path)
    assert not again.made and again.path.read_bytes() == before
