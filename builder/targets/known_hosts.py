"""The ssh dump server's host keys, picked from known_hosts files for the capture.

Not a target itself: the ssh target asks it which lines of a known_hosts file (the
recipe's, or those of the machine the recipe builds from) name its server, and
writes only those into the capture, in the one form dropbear's dbclient reads: the
plain host name, no port
(dbclient 2022.83 looks a server up by name only and reads no hashed entries).

OpenSSH writes a server on a port other than 22 as `[host]:port`, and hashes names
when HashKnownHosts is on: `|1|<salt>|<HMAC-SHA1 of the name keyed by the salt>`,
both base64 (OpenSSH's hostfile.c).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from pathlib import Path

# Where OpenSSH keeps what root's ssh has accepted: root's own file and the system's,
# relative to the machine's root directory.
MACHINE_FILES = ("root/.ssh/known_hosts", "etc/ssh/ssh_known_hosts")
HASHED_PREFIX = "|1|"


def lookup_name(host: str, port: int) -> str:
    """The name OpenSSH files a server under.

    >>> lookup_name("10.0.2.2", 22), lookup_name("dumps.example.org", 2222)
    ('10.0.2.2', '[dumps.example.org]:2222')
    """
    return host if port == 22 else f"[{host}]:{port}"


def _pattern_match(name: str, pattern: str) -> bool:
    """OpenSSH's host patterns: only `*` and `?` are special (`[` is literal, as in
    `[host]:port`), and case does not count.

    >>> _pattern_match("[h]:2222", "[h]:2222"), _pattern_match("a.example.org", "*.EXAMPLE.org")
    (True, True)
    """
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.fullmatch("".join(parts), name, re.IGNORECASE | re.DOTALL) is not None


def _hashed_match(entry: str, name: str) -> bool:
    try:
        salt_text, _, digest_text = entry[len(HASHED_PREFIX) :].partition("|")
        salt, digest = base64.b64decode(salt_text), base64.b64decode(digest_text)
    except (binascii.Error, ValueError):
        return False
    computed = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(computed, digest)


def hosts_field_matches(field: str, name: str) -> bool:
    """Whether a known_hosts line's first field names `name`: a comma-separated list of
    names, wildcards (`*`, `?`), negations (`!pattern`, which rule the line out) and
    hashed names; host names compare case-insensitively.

    >>> hosts_field_matches("dumps,10.0.2.2", "10.0.2.2")
    True
    >>> hosts_field_matches("*.example.org,!bad.example.org", "bad.example.org")
    False
    >>> hosts_field_matches("|1|c2FsdA==|bm90IGl0", "10.0.2.2")
    False
    """
    matched = False
    for entry in field.split(","):
        if entry.startswith(HASHED_PREFIX):
            matched = matched or _hashed_match(entry, name)
        elif entry.startswith("!"):
            if _pattern_match(name, entry[1:]):
                return False
        elif _pattern_match(name, entry):
            matched = True
    return matched


def server_keys(text: bytes, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (key type, base64 key) pairs `text`, a known_hosts file, holds for a server
    filed under any of `names`.

    Marker lines (`@cert-authority`, `@revoked`) are left out: dbclient knows neither.

    >>> text = b"# c\\n[h]:2222 ssh-ed25519 AAAA one\\nh ssh-rsa BBBB\\n@revoked h ssh-rsa CCCC\\n"
    >>> server_keys(text, ("[h]:2222",)), server_keys(text, ("h",))
    ([('ssh-ed25519', 'AAAA')], [('ssh-rsa', 'BBBB')])
    """
    keys: list[tuple[str, str]] = []
    for line in text.decode(errors="replace").splitlines():
        words = line.split()
        if len(words) < 3 or words[0].startswith(("#", "@")):
            continue
        filed = any(hosts_field_matches(words[0], name) for name in names)
        if filed and (words[1], words[2]) not in keys:
            keys.append((words[1], words[2]))
    return keys


def capture_lines(keys: list[tuple[str, str]], host: str) -> bytes:
    """The capture's known_hosts: each key under the plain host name, as dbclient reads it.

    >>> capture_lines([("ssh-ed25519", "AAAA")], "10.0.2.2")
    b'10.0.2.2 ssh-ed25519 AAAA\\n'
    """
    return "".join(f"{host} {kind} {key}\n" for kind, key in keys).encode()


def machine_files(root: Path) -> tuple[Path, ...]:
    """The known_hosts files of the machine whose root directory is `root`.

    >>> [str(path) for path in machine_files(Path("/"))]
    ['/root/.ssh/known_hosts', '/etc/ssh/ssh_known_hosts']
    """
    return tuple(root / name for name in MACHINE_FILES)


def machine_keys(host: str, port: int, files: tuple[Path, ...]) -> list[tuple[str, str]]:
    """The server's keys in a machine's own known_hosts `files` (those that exist), under
    the name OpenSSH checks (`[host]:port` off port 22)."""
    keys: list[tuple[str, str]] = []
    for path in files:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            continue
        keys += [key for key in server_keys(text, (lookup_name(host, port),)) if key not in keys]
    return keys


def existing(files: tuple[Path, ...]) -> tuple[str, ...]:
    """Those of `files` that exist: root reads them at every build."""
    return tuple(str(path) for path in files if path.exists())
