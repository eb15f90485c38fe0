"""Connection settings of one DataConnect source, validated once at start-up.

Everything the vendor documentation leaves open (the Deltas path, the zone of request dates,
the concurrency limit) is a setting here rather than a guess in code. Credentials are
``SecretStr``: they show as ``**********`` in ``repr`` and are only unwrapped when the token
request body is built.
"""

from __future__ import annotations

import re
from datetime import UTC, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from publisher import CONNECTOR_NAME, __version__

_IDS = re.compile(r"-?\d+(,-?\d+)*")


class RetrySettings(BaseModel):
    """Exponential backoff with full jitter, bounded by attempts and by elapsed time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Transient failures of one fetch before it gives up (the first try counts).
    max_attempts: int = Field(default=6, ge=1)
    #: Cap of the first backoff; it doubles with every failure.
    base_delay: float = Field(default=0.5, gt=0)
    #: Largest backoff drawn (a server's Retry-After may ask for longer).
    max_delay: float = Field(default=30.0, gt=0)
    #: Seconds after which a fetch stops retrying, counted from its first request.
    max_elapsed: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _base_below_max(self) -> RetrySettings:
        if self.base_delay > self.max_delay:
            raise ValueError("base_delay must not exceed max_delay")
        return self


def _default_user_agent() -> str:
    return f"{CONNECTOR_NAME}/{__version__}"


class SourceHTTPSettings(BaseModel):
    """How to reach and authenticate against one DataConnect source (one RQ database)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    #: Short name of the source, used in messages, logs and metric labels.
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    #: DataConnect host, e.g. ``https://dataconnect.iqmetrix.net``.
    base_url: str
    #: Token endpoint, e.g. ``https://accounts.iqmetrix.net/v1/oauth2/token``.
    token_url: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    username: str = Field(min_length=1)
    password: SecretStr
    #: Path of a Deltas endpoint below ``base_url``; ``{entity}`` is the entity name.
    path_template: str = "/deltas/{entity}"
    #: Per-entity paths for endpoints that do not follow ``path_template``.
    paths: dict[str, str] = Field(default_factory=dict)
    #: strftime format of StartDate/StopDate; a trailing ``%f`` is cut to milliseconds.
    date_format: str = "%Y-%m-%dT%H:%M:%S.%f"
    #: Zone DataConnect reads request dates in (an IANA name or a tzinfo).
    source_timezone: tzinfo = UTC
    #: Location tree level to filter by (Company, Region, District, Store, Channel).
    location_type: str | None = None
    #: Comma-separated IDs at that level; None leaves DataConnect's default (-1, all).
    location_type_ids: str | None = None
    #: Requests in flight at once across all entities of this source. DataConnect's own
    #: example limit is 8 per database, shared with every other client of that database.
    max_in_flight: int = Field(default=4, ge=1, le=64)
    connect_timeout: float = Field(default=10.0, gt=0)
    #: Between bytes of the answer; a large window can take DataConnect a while.
    read_timeout: float = Field(default=120.0, gt=0)
    retry: RetrySettings = RetrySettings()
    #: Refresh the access token this many seconds before it expires (at most half its life).
    token_refresh_margin: float = Field(default=300.0, ge=0)
    verify_tls: bool = True
    request_method: Literal["GET", "POST"] = "GET"
    accept_gzip: bool = True
    user_agent: str = Field(default_factory=_default_user_agent, min_length=1)

    @field_validator("base_url", "token_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        if url.userinfo:
            raise ValueError("must not carry credentials; use client_id/username settings")
        return value

    @field_validator("path_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if not value.startswith("/") or "{entity}" not in value:
            raise ValueError("must start with '/' and contain '{entity}'")
        try:
            value.format(entity="Customers")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only the placeholder {{entity}} is allowed ({exc!r})") from None
        return value

    @field_validator("source_timezone", mode="before")
    @classmethod
    def _zone(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("location_type_ids")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        if value is not None and not _IDS.fullmatch(value):
            raise ValueError("must be comma-separated integers, e.g. '-1' or '12,14'")
        return value

    @model_validator(mode="after")
    def _ids_need_type(self) -> SourceHTTPSettings:
        if self.location_type_ids is not None and self.location_type is None:
            raise ValueError("location_type_ids needs location_type")
        return self
