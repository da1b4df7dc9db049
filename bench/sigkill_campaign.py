"""Campaign: SIGKILL real builds and layouts at random moments; the output must stay whole.

Two recipes (the default one and an lz4 variant) are built, and laid out, onto
one output directory, again and again, each process killed at a random moment
(most while it writes its staging directory, some anywhere in the run). After
every kill the directory must be exactly one complete state known beforehand
by the sha256 of every file: the one before the killed operation or the one
after it. Every tenth kill a complete run follows and must leave no leftovers.

    .venv/bin/python -m bench.sigkill_campaign [--kills 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.support import kills, recipes
from tests.support.paths import DEFAULT_RECIPE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kdump-build-kills-") as scratch:
        work = Path(scratch)
        variant = recipes.write_recipe(
            work / "variant.toml", {"initrd": {"compression": "lz4", "compression_level": 9}}
        )
        tally = kills.campaign(work / "work", [DEFAULT_RECIPE, variant], args.kills,
                               seed=args.seed)  # fmt: skip
    summary = {
        "kills": tally.kills,
        "moments": dict(tally.moments),
        "outcomes": dict(tally.outcomes),
        "kills_that_left_a_staging_directory": tally.leftovers_seen,
        "write_window_seconds": round(tally.write_seconds, 4),
        "failures": tally.failures,
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(summary, indent=2))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
