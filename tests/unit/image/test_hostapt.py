"""builder/image/hostapt.py: which of the host's apt files a private state copies."""

from __future__ import annotations

from pathlib import Path

from builder.image.hostapt import copy_host_apt, host_apt_files


def test_only_the_files_apt_reads_are_copied_and_stale_copies_go(tmp_path: Path) -> None:
    host = tmp_path / "apt"
    for name, text in {
        "sources.list": "deb http://deb.debian.org/debian bookworm main\n",
        "sources.list.d/debian.sources": "Types: deb\n",
        "sources.list.d/old.list.disabled-by-farm": "deb http://x y main\n",
        "preferences.d/nodejs": "Package: nodejs\n",
        "preferences.d/backup.dpkg-old": "Package: x\n",
    }.items():
        (host / name).parent.mkdir(parents=True, exist_ok=True)
        (host / name).write_text(text)
    assert sorted(host_apt_files(host)) == [
        "preferences.d/host-nodejs",
        "sources.list.d/host-debian.sources",
        "sources.list.d/host.list",
    ]
    etc = tmp_path / "state" / "etc"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "host-gone.list").write_text("deb http://gone y main\n")
    (etc / "sources.list").write_text("ours\n")
    copy_host_apt(etc, host)
    copied = sorted(str(path.relative_to(etc)) for path in etc.rglob("*") if path.is_file())
    assert copied == ["preferences.d/host-nodejs", "sources.list",
                      "sources.list.d/host-debian.sources", "sources.list.d/host.list"]  # fmt: skip
    assert (etc / "sources.list").read_text() == "ours\n"  # the picked suites' list stays
    assert (etc / "sources.list.d/host.list").read_text() == (host / "sources.list").read_text()
