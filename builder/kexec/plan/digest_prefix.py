"""The plan's ``digest-prefix`` line: the purgatory digest's SHA-256 state after kernel and initrd.

The purgatory checks one SHA-256 over every segment up to its memsz, in load
order, and on every architecture the kernel and the initrd come first. Their
bytes are the build's, and so are their sizes: an x86_64 bzImage's memsz (the
setup header's init_size) is tens of MiB beyond the file, zeros that
kdump-load would otherwise hash on the device (under an emulated CPU that was
most of its time). The build hashes that prefix once here and writes the
state. kdump-load checks both files against the plan's size and sha256 before
it lays anything out (as it always did), and continues the digest from this
state only when its kernel and initrd segments have exactly the sizes written
here; otherwise it hashes every segment itself. The digest covers the same
bytes either way.

Python's hashlib gives no state midway; OpenSSL's SHA256_CTX (libcrypto, which
hashlib is linked against) does. The state is checked before it is written:
finishing the hash from it here must give OpenSSL's own digest of the prefix.

Line: ``digest-prefix KERNEL_BUFSZ KERNEL_MEMSZ INITRD_BUFSZ INITRD_MEMSZ H0 ... H7``.
"""

from __future__ import annotations

import ctypes
import importlib
import struct

from builder.errors import LayoutError
from builder.units import page_up

__all__ = ["digest_prefix_line", "finish_sha256"]

_BLOCK = 64
_ZEROS = 1 << 20
_K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip


class _Sha256Ctx(ctypes.Structure):
    """OpenSSL's SHA256_CTX (openssl/sha.h): h[8], Nl, Nh, data[16], num, md_len."""

    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF


def _compress(state: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    w = list(struct.unpack(">16I", block))
    for t in range(16, 64):
        s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
        s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & 0xFFFFFFFF)
    a, b, c, d, e, f, g, h = state
    for t in range(64):
        t1 = h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + _K[t] + w[t]
        t2 = (_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))
        a, b, c, d, e, f, g, h = (t1 + t2) & 0xFFFFFFFF, a, b, c, (d + t1) & 0xFFFFFFFF, e, f, g
    return tuple((x + y) & 0xFFFFFFFF for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True))


def finish_sha256(state: tuple[int, ...], length: int) -> bytes:
    """The SHA-256 digest of `length` bytes (whole blocks) whose state after them is `state`.

    >>> import hashlib
    >>> initial = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
    ...            0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
    >>> finish_sha256(initial, 0) == hashlib.sha256(b"").digest()
    True
    """
    padding = b"\x80" + bytes(_BLOCK - 9) + (8 * length).to_bytes(8, "big")
    return struct.pack(">8I", *_compress(state, padding))


def _libcrypto() -> ctypes.CDLL:
    library = ctypes.CDLL(importlib.import_module("_hashlib").__file__)
    if not hasattr(library, "SHA256_Init"):
        raise LayoutError(
            "kdump-load.plan: digest-prefix: this Python's OpenSSL has no SHA256_Init"
        )
    return library


def _prefix_state(pieces: list[tuple[bytes, int]]) -> tuple[tuple[int, ...], int]:
    """The SHA-256 state after each (bytes, memsz) piece, zero-padded to memsz; the length."""
    library, ctx = _libcrypto(), _Sha256Ctx()
    zeros = bytes(_ZEROS)
    library.SHA256_Init(ctypes.byref(ctx))
    for data, memsz in pieces:
        library.SHA256_Update(ctypes.byref(ctx), data, ctypes.c_size_t(len(data)))
        for left in range(memsz - len(data), 0, -_ZEROS):
            library.SHA256_Update(ctypes.byref(ctx), zeros, ctypes.c_size_t(min(left, _ZEROS)))
    length = sum(memsz for _data, memsz in pieces)
    state = tuple(ctx.h)
    digest = ctypes.create_string_buffer(32)
    library.SHA256_Final(digest, ctypes.byref(ctx))
    if ctx.num != 0 or length % _BLOCK or finish_sha256(state, length) != digest.raw:
        raise LayoutError("kdump-load.plan: digest-prefix: OpenSSL's SHA256_CTX is not as expected")
    return state, length


def digest_prefix_line(arch_lines: list[str], kernel: bytes, initrd: bytes) -> list[str]:
    """The digest-prefix line, from the architecture's plan lines (kernel segment offset and
    memsz); none where they give no kernel memsz or the files do not fit it."""
    values = dict(line.split(" ", 1) for line in arch_lines)
    memsz_text = values.get("bzimage-memsz", values.get("image-memsz"))
    if memsz_text is None or not initrd:
        return []
    payload = kernel[int(values.get("bzimage-payload-offset", "0"), 16) :]
    kernel_memsz, initrd_memsz = page_up(int(memsz_text, 16)), page_up(len(initrd))
    if kernel_memsz < len(payload):
        return []
    state, _length = _prefix_state([(payload, kernel_memsz), (initrd, initrd_memsz)])
    sizes = (len(payload), kernel_memsz, len(initrd), initrd_memsz)
    return [" ".join(["digest-prefix", *(f"{v:#x}" for v in (*sizes, *state))])]
