"""settings.py: defaults, one clear problem per bad value, and secrets hidden."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

import pydantic
import pytest

from publisher.dataconnect import RetrySettings
from tests.unit.dataconnect_fakes import CLIENT_SECRET, PASSWORD, make_settings


def test_defaults() -> None:
    settings = make_settings()
    assert settings.path_template == "/deltas/{entity}"
    assert settings.source_timezone is UTC
    assert settings.max_in_flight == 4
    assert settings.request_method == "GET"
    assert settings.verify_tls and settings.accept_gzip
    assert settings.location_type is None
    assert settings.retry == RetrySettings()


def test_zone_by_name() -> None:
    assert make_settings(source_timezone="America/Regina").source_timezone == ZoneInfo(
        "America/Regina"
    )


def test_secrets_are_hidden_from_repr_and_str() -> None:
    settings = make_settings()
    for text in (repr(settings), str(settings), repr(settings.model_dump())):
        assert CLIENT_SECRET not in text
        assert PASSWORD not in text
    assert settings.password.get_secret_value() == PASSWORD


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"base_url": "dc.example.com"}, "base_url", "absolute http"),
        ({"base_url": "ftp://dc.example.com"}, "base_url", "absolute http"),
        ({"token_url": "https://u:p@accounts.example.com/t"}, "token_url", "credentials"),
        ({"path_template": "/deltas/"}, "path_template", "{entity}"),
        ({"path_template": "/deltas/{entity}/{db}"}, "path_template", "only the placeholder"),
        ({"source_timezone": "Mars/Olympus"}, "source_timezone", "unknown time zone"),
        ({"location_type_ids": "12"}, "", "needs location_type"),
        ({"location_type": "Store", "location_type_ids": "12;13"}, "location_type_ids", "comma"),
        ({"max_in_flight": 0}, "max_in_flight", "greater than or equal to 1"),
        ({"request_method": "PUT"}, "request_method", "GET"),
        ({"name": "bad name"}, "name", "pattern"),
        ({"retry": {"base_delay": 10, "max_delay": 1}}, "retry", "base_delay"),
        ({"retries": 3}, "retries", "Extra inputs"),
    ],
)
def test_bad_values_are_reported_by_field(
    overrides: dict[str, object], field: str, problem: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        make_settings(**overrides)
    (error,) = caught.value.errors()
    assert ".".join(str(p) for p in error["loc"]).startswith(field)
    assert problem in error["msg"]
