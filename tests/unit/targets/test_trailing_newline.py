"""A value with a trailing newline is refused when the recipe is read (issue 24, item 8).

`re.match(r"...$")` lets "eth0\\n" through ($ matches before a final newline):
on the code before, every case below parsed, built, and failed only at crash
time, in the capture kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.recipe.parse import parse_recipe

SSH = '[source]\nroot = "/"\n[dump]\ntarget = "ssh"\nssh_key = "k"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SSH + 'ssh = "kdump@host\\n"\n', r"dump.ssh: 'kdump@host\n' is not user@host"),
        (SSH + 'ssh = "kdump\\n@host"\n', r"dump.ssh: 'kdump\n@host' is not user@host"),
        (SSH + 'ssh = "a@b"\ninterface = "eth0\\n"\n', r"dump.interface: 'eth0\n' is not"),
        (SSH + 'ssh = "a@b"\nhostname = "h\\n"\n', r"dump.hostname: 'h\n' is not a host name"),
        (
            '[source]\nroot = "/"\n[dump]\ntarget = "nfs"\nnfs = "10.0.2.2\\n:/srv"\n',
            "dump.nfs:",
        ),
        ('[source]\nrelease = "trixie\\n"\npackages = ["busybox-static"]\n', "source.release:"),
        ('[source]\npackages = ["busybox-static\\n"]\n', "source.packages:"),
    ],
)
def test_a_trailing_newline_is_refused(text: str, message: str) -> None:
    with pytest.raises(RecipeError) as raised:
        parse_recipe(text, Path("r.toml"))
    assert message in str(raised.value)
