"""publisher.dataconnect.coding: bodies decoded by ISA-L equal what the standard library gives."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.dataconnect.coding import UndecodableBody, decode_content

#: A Deltas-like body that does not shrink to a few bytes (so cutting it short loses data).
_rng = random.Random(1)
BODY = (
    b"[" + b",".join(b'{"CustomerID": "%032x"}' % _rng.getrandbits(128) for _ in range(500)) + b"]"
)


def raw_deflate(data: bytes) -> bytes:
    squeezer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return squeezer.compress(data) + squeezer.flush()


@settings(max_examples=200)
@given(data=st.binary(max_size=200_000), level=st.integers(0, 9))
def test_gzip_decodes_to_what_gzip_decompress_gives(data: bytes, level: int) -> None:
    packed = gzip.compress(data, level)
    assert decode_content(packed, "gzip") == gzip.decompress(packed) == data


@given(parts=st.lists(st.binary(max_size=5_000), min_size=1, max_size=4))
def test_every_gzip_member_is_read(parts: list[bytes]) -> None:
    packed = b"".join(gzip.compress(p) for p in parts)
    assert decode_content(packed, "gzip") == b"".join(parts)


def test_trailing_zero_padding_after_gzip_is_ignored_as_gzip_does() -> None:
    packed = gzip.compress(BODY) + b"\0" * 16
    assert decode_content(packed, "x-gzip") == gzip.decompress(packed) == BODY


@pytest.mark.parametrize("pack", [zlib.compress, raw_deflate], ids=["zlib", "raw"])
def test_deflate_with_or_without_the_zlib_wrapper(pack: object) -> None:
    assert callable(pack)
    assert decode_content(pack(BODY), "deflate") == BODY


@pytest.mark.parametrize("coding", [None, "", "identity", "Identity"])
def test_identity_is_the_body_itself(coding: str | None) -> None:
    assert decode_content(BODY, coding) is BODY


def test_codings_are_undone_last_applied_first() -> None:
    packed = gzip.compress(zlib.compress(BODY))  # deflate, then gzip
    assert decode_content(packed, "deflate, GZIP") == BODY


@pytest.mark.parametrize(
    ("body", "coding", "problem"),
    [
        (gzip.compress(BODY)[:-100], "gzip", "cut short"),
        (gzip.compress(BODY)[:200], "gzip", "cut short"),
        (b"not gzip at all", "gzip", "not a gzip stream"),
        (gzip.compress(BODY) + b"garbage", "gzip", "bytes after the gzip stream"),
        (b"not deflate", "deflate", "broken deflate"),
        (BODY, "br", "not asked for"),
    ],
    ids=["truncated-tail", "truncated-head", "garbage", "trailing-garbage", "deflate", "br"],
)
def test_a_body_that_does_not_decode_says_why(body: bytes, coding: str, problem: str) -> None:
    with pytest.raises(UndecodableBody, match=problem):
        decode_content(body, coding)
