"""DataConnect timestamp spellings: every shape the source emits parses to the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.timefmt import _parse_strict, format_request_date, parse_timestamp

EDMONTON = ZoneInfo("America/Edmonton")
# Wall-clock values the source writes without a zone (hypothesis needs naive bounds).
NAIVE_MIN = datetime(1900, 1, 1)  # noqa: DTZ001
NAIVE_MAX = datetime(2100, 1, 1)  # noqa: DTZ001


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-04-25T06:19:12.343Z", datetime(2019, 4, 25, 6, 19, 12, 343000, UTC)),
        ("2019-04-25T06:19:12", datetime(2019, 4, 25, 6, 19, 12, tzinfo=EDMONTON)),
        ("2019-04-25T06:19:12.1234567", datetime(2019, 4, 25, 6, 19, 12, 123456, EDMONTON)),
        ("2019-04-25T06:19:12.1234567Z", datetime(2019, 4, 25, 6, 19, 12, 123456, UTC)),
        (
            "2019-04-25T06:19:12.1+02:00",
            datetime(2019, 4, 25, 6, 19, 12, 100000, timezone(timedelta(hours=2))),
        ),
        ("2019-04-25 06:19:12.5", datetime(2019, 4, 25, 6, 19, 12, 500000, EDMONTON)),
    ],
)
def test_every_shape(text: str, expected: datetime) -> None:
    assert parse_timestamp(text, EDMONTON) == expected


@pytest.mark.parametrize("text", ["2019-W17-4", "20190425T061912", "2019-04-25", "yesterday"])
def test_other_iso_spellings_are_not_dataconnect_timestamps(text: str) -> None:
    with pytest.raises(ValueError, match="not a DataConnect timestamp"):
        parse_timestamp(text)


def test_empty_is_none() -> None:
    assert parse_timestamp("") is None


@given(
    moment=st.datetimes(min_value=NAIVE_MIN, max_value=NAIVE_MAX),
    digits=st.integers(0, 7),
    suffix=st.sampled_from(["", "Z", "+02:00", "-07:00", "+0530"]),
    sep=st.sampled_from(["T", " "]),
)
def test_fast_path_agrees_with_the_strict_parser(
    moment: datetime, digits: int, suffix: str, sep: str
) -> None:
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond % 10}"[:digits]
    text += suffix
    assert parse_timestamp(text, EDMONTON) == _parse_strict(text, EDMONTON)


def test_request_dates_use_the_source_zone_and_milliseconds() -> None:
    moment = datetime(2019, 10, 2, 0, 0, 0, 123456, UTC)
    assert format_request_date(moment) == "2019-10-02T00:00:00.123"
    assert format_request_date(moment, EDMONTON) == "2019-10-01T18:00:00.123"
    with pytest.raises(ValueError, match="naive"):
        format_request_date(datetime(2019, 1, 1))  # noqa: DTZ001
