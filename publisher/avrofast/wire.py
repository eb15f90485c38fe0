"""Avro binary primitives the generated encoders use: varint tables and IEEE floats.

The generated encoders write ints and longs inline, 14 bits at a time from these tables (see
``codegen._even_varint``); :func:`varint` does the same as a function, for constants, lengths
past the length table and the rare large negative value.
"""

from __future__ import annotations

import struct

#: ``struct`` packers: the same little-endian IEEE bytes fastavro's C code writes.
pack_float = struct.Struct("<f").pack
pack_double = struct.Struct("<d").pack

INT_MIN = -(1 << 31)
INT_MAX = (1 << 31) - 1
LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1


def _varint_loop(z: int) -> bytes:
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Lookup tables for 14 bits at a time: about 1.5 MB, and twice as fast as the loop on the
# 6-byte varints of millisecond timestamps, which every event carries several of.
#: ``SMALL[z]`` is the complete varint of ``z < 2**14`` (one or two bytes).
SMALL = tuple(_varint_loop(z) for z in range(1 << 14))
#: ``GROUP[k]`` is 14 bits ``k`` as two inner varint bytes (continuation bit set on both): a
#: varint of ``z >= 2**14`` is ``GROUP[z & 0x3FFF]`` followed by the varint of ``z >> 14``.
GROUP = tuple(bytes((k & 0x7F | 0x80, k >> 7 | 0x80)) for k in range(1 << 14))
#: The zig-zag of ``n`` is ``2n`` for ``n >= 0`` and ``2(~n) + 1`` below zero, so its varint can
#: be read off ``n`` (or ``~n``) without computing it: ``SMALL_EVEN[m]`` is ``SMALL[2m]``,
#: ``SMALL_ODD[m]`` is ``SMALL[2m + 1]`` and ``GROUP_EVEN[m]`` is ``GROUP[2m]`` (``m < 2**13``);
#: the higher groups of ``2m`` are those of ``m`` shifted one bit less.
SMALL_EVEN = SMALL[0::2]
SMALL_ODD = SMALL[1::2]
GROUP_EVEN = GROUP[0::2]


def varint(z: int) -> bytes:
    """The base-128 varint of a non-negative (already zig-zagged) integer."""
    if z < 0x4000:
        return SMALL[z]
    if z < 0x10000000:
        return GROUP[z & 0x3FFF] + SMALL[z >> 14]
    if z < 0x40000000000:
        return GROUP[z & 0x3FFF] + GROUP[z >> 14 & 0x3FFF] + SMALL[z >> 28]
    return _varint_loop(z)


def zigzag(n: int) -> int:
    """Avro's zig-zag mapping of a signed 64-bit integer onto a non-negative one."""
    return (n << 1) ^ (n >> 63)


def long_bytes(n: int) -> bytes:
    """The complete encoding of an Avro int or long (used for constants: union indexes)."""
    return varint(zigzag(n))
