"""Typed configuration, validated once at start-up, before any connection is made.

A TOML file gives the structure; environment variables give secrets and overrides:

- any string value may be ``${VAR}``: it is replaced by the environment variable ``VAR``
  (a missing variable is a configuration error, never an empty string);
- ``DCP_<SECTION>__<KEY>=value`` overrides a scalar of a table section, e.g.
  ``DCP_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or ``DCP_WINDOWS__OVERLAP_SECONDS=600``.

Every problem is reported as one line (``sources[0].base_url: ...``) and ``load_config``
raises :class:`publisher.errors.ConfigError` with all of them at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from publisher.entities import DEFAULT_SCHEMAS_DIR, EntitySpec, load_entities
from publisher.errors import ConfigError
from publisher.prepare import MAX_RECORD_BYTES
from publisher.progress import DEFAULT_INTERVAL

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    """One DataConnect account (one retailer's RQ database)."""

    name: str = Field(pattern=_NAME, description="Unique source name; part of keys and topics.")
    base_url: str = "https://dataconnect.iqmetrix.net"
    token_url: str = "https://accounts.iqmetrix.net/v1/oauth2/token"  # noqa: S105 - a URL
    client_id: str
    client_secret: SecretStr
    username: str
    password: SecretStr
    entities: list[str] = Field(min_length=1)
    path_template: str = "/deltas/{entity}"
    #: Overrides per entity, for endpoints whose path does not follow the template.
    paths: dict[str, str] = Field(default_factory=dict)
    location_type: str | None = None
    location_type_ids: str = "-1"
    timezone: str = "UTC"
    date_format: str = "%Y-%m-%dT%H:%M:%S.%f"
    max_in_flight: int = Field(default=4, ge=1, le=64)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    verify_tls: bool = True
    allow_insecure_http: bool = False
    request_method: Literal["GET", "POST"] = "GET"
    accept_gzip: bool = True

    @property
    def zone(self) -> tzinfo:
        return UTC if self.timezone.upper() == "UTC" else ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        problems: list[str] = []
        for attr in ("base_url", "token_url"):
            problem = _url_problem(getattr(self, attr), self.allow_insecure_http)
            if problem:
                problems.append(f"{attr}: {problem}")
        try:
            _ = self.zone
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone: unknown time zone {self.timezone!r}")
        if "{entity}" not in self.path_template:
            problems.append("path_template: must contain {entity}")
        if len(set(self.entities)) != len(self.entities):
            problems.append("entities: listed more than once")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _url_problem(url: str, allow_insecure: bool) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url!r}"
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        return (
            "plain http to a non-loopback host sends credentials in clear; "
            "use https, or set allow_insecure_http = true"
        )
    return None


def _registry_problems(p: PublisherConfig) -> list[str]:
    problems = []
    if (p.schema_registry_username is None) != (p.schema_registry_password is None):
        problems.append("schema_registry_username/password: give both or neither")
    url = p.schema_registry_url
    if not url:
        return problems
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("schema_registry_url: not an http(s) URL")
    elif parts.username is not None:
        problems.append("schema_registry_url: put credentials in schema_registry_username/password")
    # Only a password makes plain http dangerous: without one there is nothing to leak.
    elif (
        parts.scheme == "http"
        and p.schema_registry_password is not None
        and not _is_loopback(parts.hostname)
    ):
        problems.append(
            "schema_registry_url: plain http to a non-loopback host sends the registry "
            "password in clear; use https"
        )
    return problems


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class KafkaConfig(_Model):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    #: Extra topic configs for entity topics, e.g. {"retention.ms" = "604800000"}.
    topic_config: dict[str, str] = Field(default_factory=dict)
    transaction_timeout_seconds: int = Field(default=60, ge=5)
    #: How long Kafka may stay unreachable before the publisher gives up and exits non-zero.
    unavailable_deadline_seconds: float = Field(default=300.0, gt=0)
    #: Raw librdkafka producer settings, passed through untouched (librdkafka validates them).
    producer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: Raw librdkafka settings for the consumers (checkpoint reader, tail).
    consumer: dict[str, str | int | float | bool] = Field(default_factory=dict)


class WindowConfig(_Model):
    start_from: datetime = Field(description="Where a stream with no checkpoint starts.")
    overlap_seconds: float = Field(default=300.0, ge=0)
    settle_delay_seconds: float = Field(default=30.0, ge=0)
    max_window_seconds: float = Field(default=3600.0, gt=0)
    min_window_seconds: float = Field(default=1.0, gt=0)
    initial_window_seconds: float = Field(default=900.0, gt=0)
    #: Windows returning fewer rows than this grow; more than 4x this shrink.
    target_rows: int = Field(default=5000, ge=1)
    poll_interval_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> WindowConfig:
        problems = []
        if self.start_from.tzinfo is None:
            problems.append("start_from: give a time zone, e.g. 2024-01-01T00:00:00Z")
        if self.min_window_seconds > self.max_window_seconds:
            problems.append("min_window_seconds: larger than max_window_seconds")
        if not self.min_window_seconds <= self.initial_window_seconds <= self.max_window_seconds:
            problems.append("initial_window_seconds: outside [min_window, max_window]")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class MetricsConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    #: /readyz fails when an entity has not committed for this long.
    staleness_seconds: float = Field(default=900.0, gt=0)


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "text"] = "auto"
    #: Seconds between catch-up progress lines (rows/s, lag, ETA) per stream catching up.
    progress_interval_seconds: float = Field(default=DEFAULT_INTERVAL, gt=0)


class PublisherConfig(_Model):
    """Identity, topics and the encoding of events."""

    transactional_id: str = Field(pattern=_NAME)
    #: Processes the streams are spread over (each its own transactional.id and CPU core).
    shards: int = Field(default=1, ge=1, le=64)
    topic_template: str = "dataconnect.{source}.{entity}"
    key_template: str = "{id}"
    checkpoint_topic: str = "dataconnect.checkpoints"
    dead_letter_topic: str = "dataconnect.deadletter"
    wire_format: Literal["single-object", "confluent"] = "single-object"
    schema_registry_url: str | None = None
    #: HTTP basic auth for the registry (Confluent Cloud: the API key and its secret).
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    schema_registry_timeout_seconds: float = Field(default=10.0, gt=0)
    tombstones: bool = False
    deleted_rows_carry_data: bool = True
    schemas_dir: Path = DEFAULT_SCHEMAS_DIR
    #: Windows (of any streams) grouped into one transaction, at most.
    max_windows_per_transaction: int = Field(default=8, ge=1)
    #: Windows per stream fetched, mapped and encoded ahead of the one being published. While
    #: catching up, this keeps both the network and the encoder busy during commits. A
    #: process holds at most max(prefetch_windows, its streams) windows in flight (encoded,
    #: about 1 KB per Customers row): with several streams, one each is enough.
    prefetch_windows: int = Field(default=2, ge=1, le=8)
    #: Processes that parse, map and encode fetched windows beside this one. 0: the fetch
    #: threads do it, and the process's Python work (one core at most, the GIL) bounds its
    #: rows/s. N: up to N windows decode at once in other processes, so even one stream can
    #: use more cores; each takes about 100 MB and a second or two to start.
    decode_processes: int = Field(default=0, ge=0, le=16)
    #: A row whose record (key, value and headers) would be larger goes to the dead-letter
    #: topic (reason ``too_large``): a record over a topic's max.message.bytes would abort
    #: every transaction that carries it. The default fits Kafka's default limit.
    max_record_bytes: int = Field(default=MAX_RECORD_BYTES, ge=1024)

    @model_validator(mode="after")
    def _check(self) -> PublisherConfig:
        problems = []
        for name in ("topic_template", "key_template"):
            template = getattr(self, name)
            unknown = set(re.findall(r"\{(\w*)\}", template)) - {"source", "entity", "id"}
            if unknown:
                problems.append(f"{name}: unknown placeholder(s) {sorted(unknown)}")
        if "{id}" not in self.key_template:
            problems.append("key_template: must contain {id}")
        if "{entity}" not in self.topic_template:
            problems.append("topic_template: must contain {entity}")
        if self.wire_format == "confluent" and not self.schema_registry_url:
            problems.append("schema_registry_url: required for wire_format confluent")
        problems += _registry_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Config(_Model):
    publisher: PublisherConfig
    kafka: KafkaConfig = KafkaConfig()
    windows: WindowConfig
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    sources: list[SourceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Config:
        problems = []
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            problems.append("sources: names must be unique")
        # Integer IDs are per database: two sources may only share a topic when the key
        # names the source, or their rows would collide on a key.
        shared = len(self.sources) > 1 and "{source}" not in self.publisher.topic_template
        if shared and "{source}" not in self.publisher.key_template:
            problems.append(
                "publisher.key_template: several sources share each entity topic "
                "(topic_template has no {source}), so the key must contain {source}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def entity_specs(self) -> dict[str, EntitySpec]:
        """The entity declarations every source's entities refer to."""
        return load_entities(self.publisher.schemas_dir)

    def topic_for(self, source: str, entity: str) -> str:
        return self.publisher.topic_template.format(source=source, entity=entity)


def _interpolate(value: Any, where: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            var = m.group(1)
            if var not in env:
                problems.append(f"{where}: environment variable {var} is not set")
                return ""
            return env[var]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}", env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", env, problems) for i, v in enumerate(value)]
    return value


def _apply_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith("DCP_") or "__" not in name:
            continue
        section, _, key = name[4:].lower().partition("__")
        if section and key:
            data.setdefault(section, {})
            if isinstance(data[section], dict):
                data[section][key] = value


def _format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = loc.replace(".[", "[") or "config"
        msg = err["msg"].removeprefix("Value error, ")
        # Input values are deliberately not echoed: they may be secrets.
        lines.append(f"{loc}: {msg}")
    return lines


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed config document; raise ConfigError with one line per problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    doc: dict[str, Any] = _interpolate(dict(data), "config", env, problems)
    _apply_overrides(doc, env)
    if problems:
        raise ConfigError([p.removeprefix("config.") for p in problems])
    try:
        config = Config.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    specs = config.entity_specs()
    unknown = [
        f"sources[{i}].entities: unknown entity {e!r} (known: {', '.join(sorted(specs))})"
        for i, s in enumerate(config.sources)
        for e in s.entities
        if e not in specs
    ]
    if unknown:
        raise ConfigError(unknown)
    return config


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
    return parse_config(data, env)


def utc_now() -> datetime:
    """The wall clock, timezone-aware (the default clock the service is given)."""
    return datetime.now(UTC)
