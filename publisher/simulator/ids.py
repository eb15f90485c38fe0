"""Deterministic, cheap pseudo-random numbers and GUIDs derived from integers.

The history is a pure function of the seed: every per-key quantity (its GUID, store, add time)
is computed from ``mix(salt + key)`` so any block of history can be generated on its own,
without replaying what came before it.
"""

from __future__ import annotations

import random

_MASK = 0xFFFFFFFFFFFFFFFF
_ODD = 0xD6E8FEB86659FD93  # odd multiplier: multiplying by it is a bijection mod 2**64


def mix(value: int) -> int:
    """SplitMix64's finalizer: a bijection on 64-bit integers that scrambles every bit."""
    x = (value + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def seeded_random(seed: int) -> random.Random:
    """A ``random.Random`` for reproducible data; nothing here is security-relevant."""
    return random.Random(seed)  # noqa: S311 - determinism is the point


def salt(*parts: int | str) -> int:
    """A 64-bit salt from a seed and names, stable across processes (unlike ``hash``)."""
    acc = 0x2545F4914F6CDD1D
    for part in parts:
        data = part.encode() if isinstance(part, str) else part.to_bytes(16, "little", signed=True)
        for byte in data:
            acc = mix(acc ^ byte)
    return acc


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def guid_from_hex(h: str) -> str:
    """Spell 32 hex digits as a version-4 GUID (lower case, like DataConnect's)."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def guid_from_bits(bits: int) -> str:
    """Spell 128 bits as a version-4 GUID."""
    return guid_from_hex((bits & ((1 << 128) - 1)).to_bytes(16, "big").hex())


def guid_from_hash(h64: int) -> str:
    """A GUID that differs for every distinct 64-bit input.

    The high half is ``h64`` and the low half ``h64 * odd`` (a bijection). The version nibble
    overwrites bits 12-15 of the high half; inputs differing only there first differ at bit 12
    of the low half too, which the variant bits (62-63) leave alone.
    """
    return guid_from_hex((h64 << 64 | (h64 * _ODD) & _MASK).to_bytes(16, "big").hex())
