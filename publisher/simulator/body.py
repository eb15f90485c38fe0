"""Response bodies from rendered rows: a JSON array, plain or gzip-compressed.

gzip is the expensive part of serving a window (zlib runs at about 100 MB/s here, copying at
several GB/s). A block used whole is compressed once, as a raw deflate stream ending in a sync
flush; such streams concatenate into one valid deflate stream (the trick pigz uses), so a
response is the gzip header, the pre-compressed blocks with the few odd pieces compressed on
the fly between them, a final empty block, and the CRC-32 and length of the uncompressed JSON.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from publisher.simulator.history import Block, Segment

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0
_FINAL_BLOCK = b"\x03\x00"  # an empty final block with fixed Huffman codes


def flatten(segments: Sequence[Segment]) -> list[bytes]:
    """The rows of all segments, in order, as a new list."""
    rows: list[bytes] = []
    for segment in segments:
        rows.extend(segment.rows if isinstance(segment, Block) else segment)
    return rows


def json_array(rows: list[bytes]) -> bytes:
    """``[row,row,...]`` with a single copy of the row bytes (``rows`` is modified)."""
    if not rows:
        return b"[]"
    rows[0] = b"[" + rows[0]
    rows[-1] = rows[-1] + b"]"
    return b",".join(rows)


def _deflate(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def block_stream(block: Block, level: int) -> bytes:
    """The block's rows joined with ``,`` as a raw deflate stream ending in a sync flush,
    compressed on first use and cached on the block."""
    cached = block.deflated
    if cached is None:
        # racing threads compute the same bytes; either assignment is fine
        cached = block.deflated = _deflate(b",".join(block.rows), level)
    return cached


def gzip_json_array(segments: Sequence[Segment], level: int) -> bytes:
    """The gzip of ``json_array(flatten(segments))``, reusing each whole block's deflate stream."""
    parts = [_GZIP_HEADER]
    crc = 0
    size = 0
    pending: list[bytes] = [b"["]
    first = True
    for segment in segments:
        rows = segment.rows if isinstance(segment, Block) else segment
        if not rows:
            continue
        if not first:
            pending.append(b",")
        first = False
        if isinstance(segment, Block):
            raw = b"".join(pending)
            parts.append(_deflate(raw, level))
            crc = zlib.crc32(raw, crc)
            size += len(raw)
            pending = []
            parts.append(block_stream(segment, level))
            joined = b",".join(rows)  # a copy is cheaper than one crc32 call per row
            crc = zlib.crc32(joined, crc)
            size += len(joined)
        else:
            pending.append(b",".join(rows))
    pending.append(b"]")
    raw = b"".join(pending)
    parts.append(_deflate(raw, level))
    crc = zlib.crc32(raw, crc)
    size += len(raw)
    parts.append(_FINAL_BLOCK)
    parts.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(parts)
