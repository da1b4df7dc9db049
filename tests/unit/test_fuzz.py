"""Every parser of outside bytes, fuzzed: 10,000 mutated real inputs each, typed errors only.

The targets and their seeds are in tests/support/fuzz.py; the long campaign
is `python -m bench.fuzz_campaign`.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support import fuzz

EXAMPLES = 10_000


@pytest.mark.parametrize("target", fuzz.TARGETS, ids=[target.name for target in fuzz.TARGETS])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 1 << 16), randomness=st.integers(0, (1 << 64) - 1))
def test_only_typed_errors_escape(target: fuzz.Target, seed: int, randomness: int) -> None:
    seeds = _seeds(target)
    label, payload = fuzz.mutate(seeds[seed % len(seeds)], random.Random(randomness))
    event(fuzz.run_one(target, label, payload))


_SEEDS: dict[str, list[fuzz.Seed]] = {}


def _seeds(target: fuzz.Target) -> list[fuzz.Seed]:
    if target.name not in _SEEDS:
        _SEEDS[target.name] = target.seeds()
    return _SEEDS[target.name]


@pytest.mark.parametrize("target", fuzz.TARGETS, ids=[target.name for target in fuzz.TARGETS])
def test_every_seed_is_accepted(target: fuzz.Target) -> None:
    """The seeds are valid inputs: the mutations start from what the parser reads."""
    for label, payload in _seeds(target):
        assert fuzz.run_one(target, label, payload) == "ok", (target.name, label)


# Inputs the long campaign (bench/fuzz_campaign.py) found, as libFuzzer saved them:
# the first byte picks the seed's label. Each broke the one-line rule once.
FOUND = {
    "elf-section-name-with-newline.bin": "ELF",
    "ssh-key-type-with-control-bytes.bin": "ssh key",
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_what_the_campaign_found_stays_fixed(name: str) -> None:
    from tests.support.paths import DATA

    target = next(target for target in fuzz.TARGETS if target.name == FOUND[name])
    labels = sorted({label for label, _ in _seeds(target)})
    data = (DATA / "fuzz" / name).read_bytes()
    assert fuzz.run_one(target, labels[data[0] % len(labels)], data[1:]) != "ok"
