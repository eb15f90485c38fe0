"""Avro binary primitives the generated encoders call: varints and IEEE floats.

The generated encoders inline one-byte varints and call these for everything longer.
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
_SMALL = tuple(_varint_loop(z) for z in range(1 << 14))  # complete varints below 2**14
_GROUP = tuple(bytes((k & 0x7F | 0x80, k >> 7 | 0x80)) for k in range(1 << 14))  # inner groups


def varint(z: int) -> bytes:
    """The base-128 varint of a non-negative (already zig-zagged) integer."""
    if z < 0x4000:
        return _SMALL[z]
    if z < 0x10000000:
        return _GROUP[z & 0x3FFF] + _SMALL[z >> 14]
    if z < 0x40000000000:
        return _GROUP[z & 0x3FFF] + _GROUP[z >> 14 & 0x3FFF] + _SMALL[z >> 28]
    return _varint_loop(z)


def zigzag(n: int) -> int:
    """Avro's zig-zag mapping of a signed 64-bit integer onto a non-negative one."""
    return (n << 1) ^ (n >> 63)


def long_bytes(n: int) -> bytes:
    """The complete encoding of an Avro int or long (used for constants: union indexes)."""
    return varint(zigzag(n))
