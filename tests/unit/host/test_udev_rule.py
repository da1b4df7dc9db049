"""The hotplug reload rule, read as udev reads it: which events run what.
(tests/vm/test_debian_system.py runs it under a real udev: a CPU offline and online.)

The reader below knows the few rule keys the rule may use (udev(7): a line is
comma-separated KEY[{attr}] OP "value" pairs; `|` separates alternatives in a
match; ATTRS matches the device or any parent; GOTO skips to its LABEL). Any
other key or syntax fails the parse, so the rule cannot grow past what is tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import pytest

from builder.host import service
from builder.host.managed import MARKER
from builder.host.paths import UDEV_RULE_NAME, UNIT_NAME

PAIR = re.compile(r'(?P<key>[A-Z]+)(?:\{(?P<attr>[a-z_]+)\})?(?P<op>==|!=|\+=|=)"(?P<value>[^"]*)"')
MATCH_KEYS = {"SUBSYSTEM", "ACTION", "ATTRS"}
ASSIGN_KEYS = {"GOTO", "LABEL", "RUN"}


@dataclass(frozen=True)
class Pair:
    key: str
    attr: str | None
    op: str
    value: str


def parse_line(line: str) -> list[Pair]:
    pairs = []
    for item in line.split(", "):
        found = PAIR.fullmatch(item)
        assert found is not None, f"not a udev KEY OP value pair: {item!r} in {line!r}"
        pair = Pair(found["key"], found["attr"], found["op"], found["value"])
        assert pair.key in MATCH_KEYS | ASSIGN_KEYS, pair
        assert (pair.op in ("==", "!=")) == (pair.key in MATCH_KEYS), pair
        assert (pair.attr is not None) == (pair.key == "ATTRS"), pair
        pairs.append(pair)
    return pairs


def parse_rules(text: str) -> list[list[Pair]]:
    return [parse_line(line) for line in text.splitlines() if line and not line.startswith("#")]


@dataclass
class Event:
    subsystem: str
    action: str
    attrs: dict[str, str] = field(default_factory=dict)  # of the device and its parents


def matches(pair: Pair, event: Event) -> bool:
    if pair.key == "ATTRS":
        assert pair.attr is not None
        if pair.attr not in event.attrs:
            return False  # no device in the chain has it: ATTRS never matches then
        actual = event.attrs[pair.attr]
    else:
        actual = event.subsystem if pair.key == "SUBSYSTEM" else event.action
    equal = any(fnmatchcase(actual, pattern) for pattern in pair.value.split("|"))
    return equal if pair.op == "==" else not equal


def programs_run(text: str, event: Event) -> list[str]:
    """The RUN programs udev would queue for `event` under the rules of `text`."""
    run: list[str] = []
    jump: str | None = None
    for pairs in parse_rules(text):
        label = next((pair.value for pair in pairs if pair.key == "LABEL"), None)
        if jump is not None:
            if label == jump:
                jump = None
            continue
        if not all(matches(pair, event) for pair in pairs if pair.key in MATCH_KEYS):
            continue
        for pair in pairs:
            if pair.key == "RUN":
                run.append(pair.value)
            elif pair.key == "GOTO":
                jump = pair.value
    assert jump is None, f"GOTO {jump} has no LABEL after it"
    return run


RULE = service.udev_rule_text()
RELOAD = [f"/bin/systemctl --no-block try-reload-or-restart {UNIT_NAME}"]

# What changes the CPUs or memory a crash can meet.
HOTPLUG = [(subsystem, action) for subsystem in ("cpu", "memory")
           for action in ("online", "offline")]  # fmt: skip
# udev's coldplug at boot replays `add` for every cpuN and memoryN: the rule that acted
# on it restarted the unit in the middle of its boot-time load. A hot-added CPU or memory
# block is followed by its `online`, a removal preceded by its `offline`.
OTHER = [("cpu", "add"), ("cpu", "remove"), ("memory", "add"), ("memory", "remove"),
         ("cpu", "change"), ("memory", "change"), ("block", "add"), ("net", "remove"),
         ("machinecheck", "add"), ("block", "online")]  # fmt: skip


@pytest.mark.parametrize("subsystem, action", HOTPLUG)
def test_online_and_offline_reload_unless_the_kernel_rewrites_the_header(
    subsystem: str, action: str
) -> None:
    # A kernel without CONFIG_CRASH_HOTPLUG (Debian 12's 6.1) has no crash_hotplug file.
    assert programs_run(RULE, Event(subsystem, action)) == RELOAD
    # With it, but the loaded image was loaded without the flag (or nothing is loaded).
    assert programs_run(RULE, Event(subsystem, action, {"crash_hotplug": "0"})) == RELOAD
    # The kernel rewrites the header of this load itself: a reload would only cost time.
    assert programs_run(RULE, Event(subsystem, action, {"crash_hotplug": "1"})) == []


@pytest.mark.parametrize("subsystem, action", OTHER)
def test_coldplug_adds_and_other_events_run_nothing(subsystem: str, action: str) -> None:
    assert programs_run(RULE, Event(subsystem, action, {"crash_hotplug": "0"})) == []
    assert programs_run(RULE, Event(subsystem, action)) == []


def test_the_reader_rejects_what_it_does_not_know() -> None:
    with pytest.raises(AssertionError, match="not a udev KEY OP value pair"):
        parse_rules('SUBSYSTEM=="cpu", ENV{X}="1"\n')
    with pytest.raises(AssertionError, match="has no LABEL after it"):
        programs_run('GOTO="nowhere"\n', Event("cpu", "online"))


def test_the_rule_names_the_unit_and_its_owner() -> None:
    assert MARKER in RULE
    assert service.udev_rule_text("other.service").endswith(
        'RUN+="/bin/systemctl --no-block try-reload-or-restart other.service"\n'
        'LABEL="kdump_build_end"\n'
    )
    packaged = service.packaged_files()[f"usr/lib/udev/rules.d/{UDEV_RULE_NAME}"]
    assert packaged[1] == 0o644 and MARKER not in packaged[0]
    assert programs_run(packaged[0], Event("cpu", "offline")) == RELOAD


def test_the_unit_reloads_without_a_restart() -> None:
    """try-reload-or-restart restarts a unit that cannot reload: a restart unloads and
    kills a load in progress. The unit can reload, with `kdump-build reload`."""
    unit = service.unit_text("/usr/bin/kdump-build")
    assert "\nExecReload=/usr/bin/kdump-build reload\n" in unit
