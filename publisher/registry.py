"""A small client of the Confluent Schema Registry REST API, for the ``confluent`` wire format.

The publisher registers each entity's envelope schema under the subject ``<topic>-value``
(Confluent's TopicNameStrategy) with ``POST /subjects/{subject}/versions`` and frames every
message with the id it gets back (:mod:`publisher.codec`). ``tail`` goes the other way: an id it
has not seen is looked up with ``GET /schemas/ids/{id}`` and matched to a known entity by the
Parsing Canonical Form fingerprint. Any registry that speaks this API works: Confluent Schema
Registry, Karapace, Redpanda, or Apicurio Registry under ``/apis/ccompat/v7``.

What a registry answer means for the caller (mapped in one place, :func:`_raise_for`):

- connection failure, timeout, 5xx, 429: retried with backoff, then :class:`FatalError`;
- 401 / 403: :class:`ConfigError` (the credentials), the process exits 2;
- 404 from a register call: :class:`ConfigError` (the URL is not the API's base URL);
- 409: :class:`FatalError`, the schema breaks the subject's compatibility rule;
- 422 and any other answer: :class:`FatalError` with the registry's own message.

The password is a ``SecretStr``, unwrapped only when a request is sent; error messages name
the URL without any userinfo.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson
from fastavro.schema import SchemaParseException
from pydantic import SecretStr

from publisher.codec import (
    CONFLUENT_MAGIC,
    EntityCodec,
    SchemaResolver,
    UndecodableMessage,
    crc64_avro,
    parsing_canonical_form,
)
from publisher.config import Config
from publisher.entities import EntitySpec
from publisher.errors import ConfigError, FatalError

CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"
_ACCEPT: Final = f"{CONTENT_TYPE}, application/json;q=0.9"
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Where the registry is and how to talk to it."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = 10.0
    max_attempts: int = 5
    retry_base: float = 0.25
    retry_max: float = 5.0

    @classmethod
    def from_config(cls, config: Config) -> RegistrySettings:
        """The settings of ``[publisher]``; ConfigError when no registry URL is configured."""
        p = config.publisher
        if not p.schema_registry_url:
            raise ConfigError(["publisher.schema_registry_url: not set"])
        return cls(
            url=p.schema_registry_url,
            username=p.schema_registry_username,
            password=p.schema_registry_password,
            timeout=p.schema_registry_timeout_seconds,
        )

    @property
    def safe_url(self) -> str:
        """The URL without userinfo, for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def subject_for(topic: str) -> str:
    """The value subject of a topic under Confluent's TopicNameStrategy."""
    return f"{topic}-value"


def envelope_schema_text(entity: EntitySpec) -> str:
    """The schema registered for an entity: its ``.avsc`` envelope as compact JSON.

    The same entity always gives the same text, so registering it again is a no-op that
    returns the same id. Custom attributes (``dataconnect``, ``dc_kind``) are kept for readers.
    """
    return orjson.dumps(entity.schema).decode()


class SchemaRegistryClient:
    """Registers schemas and reads them back by id. One ``httpx.Client``; close it after use."""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``transport`` replaces the network (tests); ``sleep`` the wait between retries."""
        self.settings = settings
        self._sleep = sleep
        auth = None
        if settings.username is not None and settings.password is not None:
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        # The base URL keeps its path (Apicurio serves the API under /apis/ccompat/v7), so
        # request paths below are relative to it.
        self._http = httpx.Client(
            base_url=settings.url.rstrip("/") + "/",
            auth=auth,
            timeout=settings.timeout,
            transport=transport,
            headers={"Accept": _ACCEPT},
        )

    def register(self, subject: str, schema: str) -> int:
        """Register an Avro ``schema`` (JSON text) under ``subject``; return its schema id.

        Registering a schema the subject already has returns the existing id.
        """
        body = orjson.dumps({"schema": schema})
        doc = self._call(
            "POST",
            f"subjects/{quote(subject, safe='')}/versions",
            f"registering {subject}",
            content=body,
            headers={"Content-Type": CONTENT_TYPE},
        )
        schema_id = doc.get("id")
        if not isinstance(schema_id, int) or not 0 <= schema_id < 2**31:
            raise FatalError(
                f"schema registry {self.settings.safe_url}: registering {subject} gave no "
                f"valid id ({str(doc)[:200]})"
            )
        return schema_id

    def schema(self, schema_id: int) -> str | None:
        """The Avro schema text with this id, or None when the registry has no such id."""
        doc = self._call(
            "GET", f"schemas/ids/{schema_id}", f"reading schema id {schema_id}", missing_ok=True
        )
        if not doc:
            return None
        if doc.get("schemaType", "AVRO") != "AVRO" or not isinstance(doc.get("schema"), str):
            raise UndecodableMessage(f"registry id {schema_id} is not an Avro schema")
        text: str = doc["schema"]
        return text

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        missing_ok: bool = False,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        s = self.settings
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}"
                delay = None
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return _raise_for(response, s.safe_url, what, missing_ok=missing_ok)
                problem = f"HTTP {response.status_code} {_registry_message(response)}"
                delay = _retry_after(response)
            if attempt >= s.max_attempts:
                raise FatalError(
                    f"schema registry {s.safe_url}: {what} failed after {attempt} attempts "
                    f"({problem})"
                )
            if delay is None:
                delay = s.retry_base * 2 ** (attempt - 1)
            self._sleep(min(s.retry_max, delay))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchemaRegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _raise_for(
    response: httpx.Response, url: str, what: str, *, missing_ok: bool
) -> dict[str, Any]:
    """The JSON body of a 2xx answer; every other status becomes the error the caller needs."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise FatalError(f"schema registry {url}: {what}: the answer is not a JSON object")
        return doc
    message = _registry_message(response)
    where = f"schema registry {url}: {what}"
    if status in (401, 403):
        raise ConfigError(
            [
                f"publisher.schema_registry_username/password: {where} was refused "
                f"(HTTP {status}): check the credentials and their permissions"
            ]
        )
    if status == 404 and missing_ok:
        return {}
    if status == 404:
        raise ConfigError(
            [
                f"publisher.schema_registry_url: {where} got HTTP 404 {message}; is it the "
                "base URL of the Confluent-compatible API (Apicurio: .../apis/ccompat/v7)?"
            ]
        )
    if status == 409:
        raise FatalError(
            f"{where}: the schema is incompatible with the subject's latest version under "
            f"its compatibility rule ({message}); register a compatible schema or change "
            "the subject's compatibility level"
        )
    if status == 422:
        raise FatalError(f"{where}: the registry rejected the schema ({message})")
    raise FatalError(f"{where}: HTTP {status} {message}")


def _registry_message(response: httpx.Response) -> str:
    """The registry's ``error_code``/``message`` (Confluent's error body), or a short text."""
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "message" in doc:
        return f"[{doc.get('error_code', '?')}] {str(doc['message'])[:300]}"
    return response.text[:200].strip()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


def register_value_schemas(
    config: Config,
    specs: Mapping[str, EntitySpec],
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Topic -> schema id of every configured (source, entity) topic, registering each entity's
    envelope under ``<topic>-value``. Empty unless ``wire_format`` is ``confluent``.

    Every shard registers every topic: registration is idempotent, and it keeps shards
    independent of each other's start order.
    """
    if config.publisher.wire_format != "confluent":
        return {}
    topics = {config.topic_for(s.name, e): specs[e] for s in config.sources for e in s.entities}
    ids: dict[str, int] = {}
    with SchemaRegistryClient(
        RegistrySettings.from_config(config), transport=transport, sleep=sleep
    ) as client:
        for topic, spec in topics.items():
            ids[topic] = client.register(subject_for(topic), envelope_schema_text(spec))
    return ids


class RegistryResolver:
    """Decodes messages of both wire formats, learning Confluent schema ids from the registry.

    An unknown id is read once with ``GET /schemas/ids/{id}`` and matched to a known entity by
    the fingerprint of its Parsing Canonical Form; the entity's codec then decodes it.
    """

    def __init__(
        self,
        specs: Iterable[EntitySpec],
        settings: RegistrySettings,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._specs = {spec.name: spec for spec in specs}
        self._codecs = [EntityCodec(spec) for spec in self._specs.values()]
        self._by_fingerprint = {c.fingerprint: c for c in self._codecs}
        self._resolver = SchemaResolver(self._codecs)
        self._known_ids: set[int] = set()
        #: Why an id cannot be decoded: the registry has no such id, or no entity that schema.
        self._unknown: dict[int, str] = {}

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(entity name, record) of a message in either wire format."""
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            schema_id = int.from_bytes(data[1:5], "big")
            if schema_id not in self._known_ids:
                self._learn(schema_id)
        return self._resolver.decode(data)

    def _learn(self, schema_id: int) -> None:
        if schema_id in self._unknown:
            raise UndecodableMessage(self._unknown[schema_id])
        try:
            codec = self._codec_for(schema_id)
        except UndecodableMessage as exc:
            # Remembered: a topic full of such messages must not ask the registry each time.
            self._unknown[schema_id] = str(exc)
            raise
        self._codecs.append(codec)
        self._known_ids.add(schema_id)
        self._resolver = SchemaResolver(self._codecs)

    def _codec_for(self, schema_id: int) -> EntityCodec:
        # A short-lived client: lookups happen once per id, and nothing has to be closed later.
        with SchemaRegistryClient(self._settings, transport=self._transport) as client:
            text = client.schema(schema_id)
        if text is None:
            raise UndecodableMessage(f"the registry has no schema with id {schema_id}")
        try:
            canonical = parsing_canonical_form(orjson.loads(text))
        except (ValueError, KeyError, TypeError, SchemaParseException):
            raise UndecodableMessage(
                f"registry id {schema_id} is not a valid Avro schema"
            ) from None
        known = self._by_fingerprint.get(crc64_avro(canonical.encode("utf-8")))
        if known is None:
            raise UndecodableMessage(
                f"registry id {schema_id} is a schema that no configured entity has"
            )
        return EntityCodec(
            self._specs[known.entity_name], wire_format="confluent", schema_id=schema_id
        )


def message_resolver(
    config: Config, *, transport: httpx.BaseTransport | None = None
) -> SchemaResolver | RegistryResolver:
    """The decoder ``tail`` uses: fingerprints only, or with a registry when one is configured
    (whatever the wire format: the topic may hold messages written under either)."""
    specs = config.entity_specs().values()
    if not config.publisher.schema_registry_url:
        return SchemaResolver.for_entities(specs)
    return RegistryResolver(specs, RegistrySettings.from_config(config), transport=transport)
