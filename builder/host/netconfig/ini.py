"""The INI dialect systemd-networkd and NetworkManager keyfiles share: sections, and
keys that may repeat (networkd's `Address=`), read in order."""

from __future__ import annotations

from pathlib import Path

Sections = list[tuple[str, list[tuple[str, str]]]]


def read_sections(path: Path) -> Sections:
    """[(section, [(key, value), ...]), ...] in file order; comments (`#`, `;`) dropped.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".network") as f:
    ...     _ = f.write("[Network]\\nAddress=10.0.0.5/24\\n# c\\nAddress=fd00::5/64\\n")
    ...     f.flush()
    ...     read_sections(Path(f.name))
    [('Network', [('Address', '10.0.0.5/24'), ('Address', 'fd00::5/64')])]
    """
    sections: Sections = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1], []))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            sections[-1][1].append((key.strip(), value.strip()))
    return sections


def values(sections: Sections, section: str, key: str) -> list[str]:
    """Every value of `key` in every `section` of that name, in order."""
    return [value for name, items in sections if name == section
            for found, value in items if found == key]  # fmt: skip


def value(sections: Sections, section: str, key: str, default: str = "") -> str:
    """The last value of `key` in `section` (the one that counts), or `default`."""
    found = values(sections, section, key)
    return found[-1] if found else default
