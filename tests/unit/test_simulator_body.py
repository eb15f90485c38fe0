"""Response bodies: the stitched gzip stream decodes to exactly the plain JSON array."""

from __future__ import annotations

import gzip
import zlib

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.simulator.body import flatten, gzip_json_array, json_array
from publisher.simulator.history import Block, Segment

row = st.dictionaries(
    st.text(max_size=8), st.text(max_size=40) | st.integers(-(2**63), 2**63 - 1), max_size=4
).map(orjson.dumps)


def block(rows: list[bytes]) -> Block:
    n = len(rows)
    return Block([0] * n, [0] * n, [0] * n, rows, 0, False, 0)


segment: st.SearchStrategy[Segment] = st.lists(row, max_size=30) | st.lists(
    row, min_size=1, max_size=30
).map(block)


@settings(max_examples=25)
@given(st.lists(segment, max_size=6), st.integers(0, 9))
def test_gzip_of_stitched_blocks_is_the_json_array(segments: list[Segment], level: int) -> None:
    expected = json_array(flatten(segments))
    assert orjson.loads(expected) == [orjson.loads(r) for r in flatten(segments)]
    once = gzip_json_array(segments, level)
    assert gzip.decompress(once) == expected
    # a streaming decoder (as httpx uses) sees one member and no trailing garbage
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decoder.decompress(once) == expected
    assert decoder.eof and decoder.unused_data == b""
    # the second time whole blocks come from their cached deflate stream
    assert gzip_json_array(segments, level) == once


def test_json_array_of_nothing_is_an_empty_array() -> None:
    assert json_array([]) == b"[]"
    assert gzip.decompress(gzip_json_array([], 1)) == b"[]"
    assert gzip.decompress(gzip_json_array([[], block([b"{}"]), []], 1)) == b"[{}]"
