"""What ties a stored calibration measurement to the boots that made it.

Every boot of a calibration keeps its evidence (`boot_evidence`): the
capture's sha256, the kernel package's name and version, the QEMU command,
the reservation the main kernel made, the console's sha256 and its decisive
lines (the "dump saved" line, or the line saying why the capture failed).
The console itself goes to WORK/consoles/<sha256>.log and, for the decisive
boots of a stored minimum, compressed into bench/evidence/<store>/.

A measurement's decisive boots are the confirmed minimum (a passing boot at
it) and the size one 8 MiB step below (a failing boot, for the memory
reason). `evidence_problems` says what a stored measurement lacks; `--write`
refuses to store one that lacks any, and so does a replay from the trial log
without its console (tests/unit/crashkernel/test_calibration_provenance.py
checks the stored files the same way).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.calibration_search import STEP, Capture, Config, Trial
from builder.units import MiB
from tests.support.capture_memory import capture_part, memory_reason
from tests.support.paths import REPO

EVIDENCE_DIR = REPO / "bench" / "evidence"
# The lines of a console that decide a trial, besides the memory reason.
DECISIVE = re.compile(
    r"^.*(?:kdump: dump saved to|kdump: FAILED|Kernel panic - not syncing"
    r"|Reserving \d+MB of memory at \d+MB for crashkernel|crashkernel reserved:"
    r"|Memory: \d+K/\d+K available).*$",
    re.MULTILINE,
)
FIELDS = ("capture_sha256", "kernel_package", "qemu_command", "reservation", "console_sha256",
          "decisive")  # fmt: skip


def console_digest(console: str) -> str:
    return hashlib.sha256(console.encode()).hexdigest()


def kernel_package(capture: Path) -> str:
    """The capture kernel's Debian package and version, from the build's manifest.json:
    linux-image-VER, or since Debian 14's split of it linux-binary-VER (the image's
    package; linux-image-VER only depends on it and is not fetched)."""
    manifest = json.loads((capture / "manifest.json").read_text())
    (package,) = [p for p in manifest["packages"]
                  if p["name"].startswith(("linux-image-", "linux-binary-"))]  # fmt: skip
    return f"{package['name']} {package['version']}"


def decisive_lines(console: str) -> list[str]:
    """The console lines that decide a trial, in order: the reservation, the capture
    kernel's memory, then "dump saved" or the failure (the memory reason first)."""
    lines = [match.group(0).strip() for match in DECISIVE.finditer(console)]
    reason = memory_reason(console)
    return list(dict.fromkeys([*lines, *([reason] if reason else [])]))


def boot_evidence(
    capture: Capture, command: Sequence[str], console: str, work: Path, scratch: Path
) -> dict[str, object]:
    """One boot's evidence; its console is kept in WORK/consoles/<sha256>.log."""
    digest = console_digest(console)
    logs = work / "consoles"
    logs.mkdir(exist_ok=True)
    (logs / f"{digest}.log").write_bytes(console.encode())
    places = ((str(scratch), "$TRIAL"), (str(work), "$WORK"))
    shown = [_replace_all(word, places) for word in command]
    reserved = [line for line in decisive_lines(console) if "crashkernel" in line]
    return {
        "capture_sha256": capture.sha256,
        "kernel_package": kernel_package(capture.directory),
        "qemu_command": shown,
        "reservation": reserved[0] if reserved else "",
        "console_sha256": digest,
        "decisive": decisive_lines(console),
    }


def _replace_all(text: str, places: Sequence[tuple[str, str]]) -> str:
    for old, new in places:
        text = text.replace(old, new)
    return text


def decisive_trials(minimum_mib: int, seen: Sequence[Trial]) -> tuple[Trial | None, Trial | None]:
    """The last passing boot at the minimum and the last failing one a step below."""
    at = [t for t in seen if t.size_mib == minimum_mib and t.ok]
    below = [t for t in seen if t.size_mib == minimum_mib - STEP // MiB and not t.ok]
    return (at[-1] if at else None), (below[-1] if below else None)


def unbacked(config: Config, minimum_mib: int, seen: Sequence[Trial], work: Path) -> list[str]:
    """Why a measured minimum cannot be stored: its decisive boots lack evidence, or were
    replayed from the trial log without their console."""
    problems = []
    passing, failing = decisive_trials(minimum_mib, seen)
    wanted = [("passing boot at", minimum_mib, passing)]
    if minimum_mib > STEP // MiB:
        wanted.append(("failing boot at", minimum_mib - STEP // MiB, failing))
    for role, size, trial in wanted:
        where = f"{config.name}: {role} {size}M"
        if trial is None:
            problems.append(f"{where}: none")
        elif trial.evidence is None:
            problems.append(f"{where} was replayed from trials.jsonl without evidence")
        elif not (work / "consoles" / f"{trial.evidence['console_sha256']}.log").is_file():
            problems.append(f"{where}: its console is not in {work / 'consoles'}")
    return problems


def trial_record(trial: Trial, store: str, work: Path, decisive: bool) -> dict[str, object]:
    """A trial as the store keeps it; a decisive one's console is compressed into
    bench/evidence/<store>/ and named in its evidence."""
    record: dict[str, object] = {"crashkernel": f"{trial.size_mib}M", "ok": trial.ok,
                                 "outcome": trial.outcome}  # fmt: skip
    if trial.replayed:
        record["replayed"] = True
    if trial.evidence is not None:
        evidence = dict(trial.evidence)
        if decisive:
            digest = str(evidence["console_sha256"])
            kept = EVIDENCE_DIR / store / f"{digest[:16]}.log.xz"
            kept.parent.mkdir(parents=True, exist_ok=True)
            console = (work / "consoles" / f"{digest}.log").read_bytes()
            kept.write_bytes(lzma.compress(console, preset=9 | lzma.PRESET_EXTREME))
            evidence["console"] = str(kept.relative_to(REPO))
        record["evidence"] = evidence
    return record


def evidence_problems(measurement: Mapping[str, Any]) -> list[str]:
    """What a stored measurement lacks: decisive boots with every field, their consoles
    kept and matching, "dump saved" at the minimum and a memory reason below it."""
    minimum = measurement["minimum"] // MiB
    trials = measurement["trials"]
    problems = []
    wanted = [(minimum, True)] + ([(minimum - STEP // MiB, False)] if minimum > STEP // MiB else [])
    for size, ok in wanted:
        guest = f"{measurement['ram'] // MiB}M/{measurement['vcpus']}cpu {measurement['variant']}"
        where = f"{guest}: {size}M {'ok' if ok else 'fail'}"
        kept = [t for t in trials if t.get("crashkernel") == f"{size}M" and t.get("ok") is ok
                and "console" in t.get("evidence", {})]  # fmt: skip
        if not kept:
            problems.append(f"{where}: no boot with its console kept")
            continue
        problems += [f"{where}: {problem}" for problem in _one_boot(kept[-1]["evidence"], size, ok)]
    return problems


def _one_boot(evidence: Mapping[str, Any], size: int, ok: bool) -> list[str]:
    missing = [name for name in FIELDS if not evidence.get(name)]
    if missing:
        return [f"evidence lacks {missing}"]
    path = REPO / evidence["console"]
    if not path.is_file():
        return [f"{evidence['console']} is missing"]
    console = lzma.decompress(path.read_bytes()).decode(errors="replace")
    problems = []
    if console_digest(console) != evidence["console_sha256"]:
        problems.append(f"{evidence['console']}: not the console whose sha256 is stored")
    if decisive_lines(console) != evidence["decisive"]:
        problems.append(f"{evidence['console']}: its decisive lines differ from the stored ones")
    reserved = evidence["reservation"]
    if f"({size} MB)" not in reserved and f"Reserving {size}MB" not in reserved:
        problems.append(f"reservation {evidence['reservation']!r} is not {size}M")
    saved = "kdump: dump saved to" in capture_part(console)
    if ok and not saved:
        problems.append("passing boot without 'kdump: dump saved to'")
    if not ok and (saved or not memory_reason(console)):
        problems.append("failing boot without a memory reason on the capture's console")
    return problems
