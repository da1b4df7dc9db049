"""Fuzz target of the host recipe writer (issue 24): whatever bytes a mount point, a
label, a path or a console argument holds, the recipe parses back to those values,
and nothing else; a value TOML cannot hold is refused with the key it belongs to."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import RecipeError
from builder.host.probe import DumpFilesystem
from builder.host.recipe import host_recipe_text
from builder.recipe.parse import parse_recipe
from tests.unit.host.test_recipe import FACTS

# Control bytes and TOML's own syntax come often; any byte can (file names are bytes,
# so a value may not be UTF-8 at all: it then decodes to surrogates, as Python does).
_TRICKY = b"\x00\x01\t\n\r\x1b\x7f\"\\#=[]' \xc3\xa9\xff"
_BYTES = st.lists(st.one_of(st.sampled_from(list(_TRICKY)), st.integers(0, 255)), max_size=24)
NAMES = _BYTES.map(lambda values: os.fsdecode(bytes(values)))


@settings(max_examples=1_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(mount_point=NAMES, label=NAMES, path=NAMES, fstype=NAMES, console=NAMES)
def test_the_host_recipe_parses_back_to_its_values(
    mount_point: str, label: str, path: str, fstype: str, console: str
) -> None:
    device = "LABEL=" + (label or "k")
    filesystem = DumpFilesystem(device, fstype or "ext4", Path("/" + mount_point), "/" + path)
    facts = replace(FACTS, dump_filesystem=filesystem, consoles=("console=" + console,))
    try:
        text = host_recipe_text(facts)
    except RecipeError as error:
        key = str(error).split(":")[0]
        assert key in {"dump.device", "dump.fstype", "dump.path", "kernel.cmdline_append"}
        values = {"dump.device": device, "dump.fstype": fstype, "dump.path": path,
                  "kernel.cmdline_append": console}  # fmt: skip
        assert any(char == "\0" or 0xD800 <= ord(char) <= 0xDFFF for char in values[key])
        return
    recipe = parse_recipe(text, Path("recipe.toml"))
    expected = parse_recipe(host_recipe_text(FACTS), Path("recipe.toml"))
    dump = recipe.dump.to_json()
    assert (dump["device"], dump["fstype"], dump["path"]) == (device, fstype or "ext4", "/" + path)
    assert recipe.kernel.cmdline_append == ("console=" + console,)
    # Nothing else changed: no key came from a value.
    assert replace(recipe, dump=expected.dump, kernel=expected.kernel) == expected
    assert {k: v for k, v in dump.items() if k not in {"device", "fstype", "path"}} == {
        k: v for k, v in expected.dump.to_json().items() if k not in {"device", "fstype", "path"}
    }
