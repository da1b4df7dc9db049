"""The files a dump target reads from the host (the ssh key, known_hosts) are trusted only
when nobody but root can change them (issue 24, item 7).

On the code before, only the recipe and its includes were checked: a key in a
directory another user may write was built into every boot's capture, so that
user chose the key (and the known_hosts) the capture sends the dump with.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from builder.errors import HostError
from builder.host.paths import HostPaths
from builder.host.state import enabled_recipe, record_enabled
from tests.support.unprivileged import as_nobody, shared

__all__ = ["shared"]  # the fixture

SSH = 'target = "ssh"\nssh = "kdump@10.0.2.2"\nnetwork = "dhcp"\ninterface = "eth0"\n'
# The key `name` under `directory`, named by the main target or by a fallback.
RECIPES = {
    "ssh_key": '[dump]\n{ssh}ssh_key = "{key}"\n',
    "ssh_known_hosts": '[dump]\n{ssh}ssh_key = "root-key"\nssh_known_hosts = "{key}"\n',
    "fallback": '[dump]\ndevice = "LABEL=kdump"\n[[dump.fallback]]\n{ssh}ssh_key = "{key}"\n',
}
KEYS = {"ssh_key": "dump.ssh_key", "ssh_known_hosts": "dump.ssh_known_hosts", "fallback":
        "dump.ssh_key"}  # fmt: skip


def _enable_with_key(paths: HostPaths, recipe_dir: Path, key: Path, case: str) -> Path:
    (recipe_dir / "root-key").write_bytes(b"root's key\n")
    os.chmod(recipe_dir / "root-key", 0o600)
    recipe = recipe_dir / "recipe.toml"
    body = RECIPES[case].format(ssh=SSH, key=key)
    recipe.write_text(f'[source]\nroot = "/"\n{body}')
    record_enabled(paths, recipe)
    return recipe


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_a_target_file_in_a_directory_another_user_may_write_is_refused(
    tmp_path: Path, shared: Path, case: str
) -> None:
    key = shared / "kdump_id_ed25519"
    key.write_bytes(b"root's key\n")
    os.chmod(key, 0o600)  # nobody cannot read it, but may put their own in its place:
    as_nobody("import os, sys; os.rename(sys.argv[1], sys.argv[1] + '.old')", str(key))
    as_nobody("open(__import__('sys').argv[1], 'w').write('their key')", str(key))
    paths = HostPaths(tmp_path)
    recipe = _enable_with_key(paths, tmp_path, key, case)
    with pytest.raises(HostError) as raised:
        enabled_recipe(paths)
    assert str(raised.value) == (
        f"{key}: refusing a file {recipe} names in {KEYS[case]} that someone other than "
        f"root can change (it is owned by uid 65534, not root)"
    )
    # Root's own file there is refused as well: the directory lets nobody replace it.
    key.unlink()
    shutil.move(f"{key}.old", key)
    with pytest.raises(HostError) as raised:
        enabled_recipe(paths)
    assert str(raised.value).endswith(f"({shared} is writable by its group)")  # 0777


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_the_same_key_in_a_directory_only_root_may_write_is_accepted(
    tmp_path: Path, case: str
) -> None:
    (tmp_path / "keys").mkdir(mode=0o700)
    key = tmp_path / "keys" / "kdump_id_ed25519"
    key.write_bytes(b"root's key\n")
    os.chmod(key, 0o600)
    paths = HostPaths(tmp_path)
    recipe = _enable_with_key(paths, tmp_path, key, case)
    assert enabled_recipe(paths).path == recipe


def test_a_key_reached_through_a_symlink_another_user_may_replace_is_refused(
    tmp_path: Path, shared: Path
) -> None:
    """The link points at root's key now; nobody may point it elsewhere at the next boot."""
    (tmp_path / "keys").mkdir(mode=0o700)
    (tmp_path / "keys" / "kdump_id_ed25519").write_bytes(b"root's key\n")
    link = shared / "kdump_id_ed25519"
    link.symlink_to(tmp_path / "keys" / "kdump_id_ed25519")
    paths = HostPaths(tmp_path)
    recipe = _enable_with_key(paths, tmp_path, link, "ssh_key")
    with pytest.raises(HostError) as raised:
        enabled_recipe(paths)
    assert str(raised.value) == (
        f"{link}: refusing a file {recipe} names in dump.ssh_key that someone other than "
        f"root can change ({shared} is writable by its group)"
    )
