"""The schema registry client, its wiring into build_streams and tail's decoder, against an
``httpx.MockTransport`` that plays the Confluent Schema Registry REST API: global ids shared by
identical schemas across subjects, BACKWARD-style 409s, Confluent's error bodies, basic auth."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from publisher.codec import EntityCodec, UndecodableMessage, parsing_canonical_form
from publisher.config import Config, parse_config
from publisher.entities import load_entities
from publisher.errors import ConfigError, FatalError
from publisher.mapping import RowMapper
from publisher.metrics import PublisherMetrics
from publisher.registry import (
    CONTENT_TYPE,
    RegistryResolver,
    RegistrySettings,
    SchemaRegistryClient,
    envelope_schema_text,
    message_resolver,
    register_value_schemas,
    subject_for,
)
from publisher.runner import Shard, build_streams

ENTITIES = load_entities()
BASE = "http://127.0.0.1:8081/apis/ccompat/v7"
PASSWORD = "registry-pa55word-value"
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _error(status: int, code: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error_code": code, "message": message})


@dataclass
class FakeRegistry:
    """An in-memory Confluent Schema Registry behind a path prefix.

    Ids are global: the same schema (by canonical form) has one id in every subject, as in
    Confluent's registry. ``incompatible`` subjects refuse any schema they do not already hold
    (a BACKWARD check that fails). ``faults`` are answered first, one per request.
    """

    prefix: str = "/apis/ccompat/v7"
    credentials: tuple[str, str] | None = None
    incompatible: set[str] = field(default_factory=set)
    faults: list[httpx.Response | Exception] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    schemas: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    _ids: dict[str, int] = field(default_factory=dict)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        if self.credentials is not None:
            user, password = self.credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {token}":
                return _error(401, 401, "Unauthorized")
        path = request.url.path
        if not path.startswith(self.prefix + "/"):
            return httpx.Response(404, text="Not Found")
        parts = path[len(self.prefix) + 1 :].split("/")
        if request.method == "POST" and len(parts) == 3 and parts[0::2] == ["subjects", "versions"]:
            return self._register(parts[1], request)
        if request.method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            text = self.schemas.get(int(parts[2]))
            if text is None:
                return _error(404, 40403, "Schema not found")
            return httpx.Response(200, json={"schema": text})
        return _error(404, 404, "HTTP 404 Not Found")

    def _register(self, subject: str, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Content-Type") not in (CONTENT_TYPE, "application/json"):
            return _error(415, 415, "Unsupported Media Type")
        try:
            text = orjson.loads(request.content)["schema"]
            canonical = parsing_canonical_form(orjson.loads(text))
        except (ValueError, KeyError, TypeError):
            return _error(422, 42201, "Invalid schema")
        schema_id = self._ids.setdefault(canonical, len(self._ids) + 1)
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            if subject in self.incompatible and versions:
                return _error(409, 409, "Schema being registered is incompatible")
            versions.append(schema_id)
        self.schemas.setdefault(schema_id, text)
        return httpx.Response(200, json={"id": schema_id})

    def registered(self, subject: str) -> int:
        return self.subjects[subject][-1]


def config_doc(**publisher: Any) -> dict[str, Any]:
    return {
        "publisher": {
            "transactional_id": "t",
            "wire_format": "confluent",
            "schema_registry_url": BASE,
            **publisher,
        },
        "windows": {"start_from": "2024-01-01T00:00:00Z"},
        "sources": [
            {
                "name": name,
                "base_url": "http://127.0.0.1:1",
                "token_url": "http://127.0.0.1:1/token",
                "client_id": "c",
                "client_secret": "s",
                "username": "u",
                "password": "p",
                "entities": ["Customers", "Discussions"],
            }
            for name in ("east", "west")
        ],
    }


def make_config(env: dict[str, str] | None = None, **publisher: Any) -> Config:
    return parse_config(config_doc(**publisher), env=env or {})


def client(
    fake: FakeRegistry, sleeps: list[float] | None = None, **kw: Any
) -> SchemaRegistryClient:
    return SchemaRegistryClient(
        RegistrySettings(BASE, **kw),
        transport=httpx.MockTransport(fake),
        sleep=(sleeps if sleeps is not None else []).append,
    )


def customers_record() -> dict[str, Any]:
    row = {"CustomerID": GUID, "RowThumbprint": GUID, "RowEvent": "Added", "FirstName": "Ann"}
    mapper = RowMapper(ENTITIES["Customers"], source_name="east", version="1")
    return mapper.map(row, 1_556_150_400_000, 1_556_154_000_000, 1_556_160_000_000).record


# --- registering


def test_register_posts_the_envelope_under_the_topics_value_subject() -> None:
    fake = FakeRegistry()
    with client(fake) as c:
        schema_id = c.register(
            subject_for("dc.east.Customers"), envelope_schema_text(ENTITIES["Customers"])
        )
    (request,) = fake.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/subjects/dc.east.Customers-value/versions"
    assert request.headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
    sent = orjson.loads(orjson.loads(request.content)["schema"])
    assert sent == ENTITIES["Customers"].schema  # the .avsc, custom attributes included
    assert schema_id == fake.registered("dc.east.Customers-value")


def test_every_configured_topic_gets_the_id_of_its_entitys_schema() -> None:
    fake = FakeRegistry()
    config = make_config(topic_template="dc.{source}.{entity}")
    ids = register_value_schemas(config, config.entity_specs(), transport=httpx.MockTransport(fake))
    topics = [f"dc.{s}.{e}" for s in ("east", "west") for e in ("Customers", "Discussions")]
    assert ids == {t: fake.registered(f"{t}-value") for t in topics}
    # One schema, one id, whatever the subject; two entities, two ids.
    assert ids["dc.east.Customers"] == ids["dc.west.Customers"] != ids["dc.east.Discussions"]
    # Registering again (a restart, another shard) changes nothing.
    again = register_value_schemas(
        config, config.entity_specs(), transport=httpx.MockTransport(fake)
    )
    assert again == ids
    assert all(len(v) == 1 for v in fake.subjects.values())


def test_single_object_format_never_calls_the_registry() -> None:
    fake = FakeRegistry()
    config = make_config(wire_format="single-object")
    assert (
        register_value_schemas(config, config.entity_specs(), transport=httpx.MockTransport(fake))
        == {}
    )
    assert fake.requests == []


def test_build_streams_frames_values_with_the_registered_ids() -> None:
    fake = FakeRegistry()
    config = make_config()
    metrics = PublisherMetrics(CollectorRegistry(), clock=lambda: datetime.now(UTC))
    streams = build_streams(
        config,
        config.entity_specs(),
        Shard(),
        metrics,
        registry_transport=httpx.MockTransport(fake),
    )
    assert len(streams) == 4
    for s in streams:
        schema_id = fake.registered(f"{s.topic}-value")
        value = s.shape.codec.encode(customers_record()) if s.entity.name == "Customers" else None
        assert s.shape.codec.header == b"\x00" + schema_id.to_bytes(4, "big")
        if value is not None:
            assert value[:5] == s.shape.codec.header
            assert s.shape.codec.decode(value) == customers_record()


# --- authentication


def test_basic_auth_is_sent_and_the_password_stays_out_of_repr() -> None:
    fake = FakeRegistry(credentials=("api-key", PASSWORD))
    settings = RegistrySettings(BASE, username="api-key", password=SecretStr(PASSWORD))
    assert PASSWORD not in repr(settings)
    with SchemaRegistryClient(settings, transport=httpx.MockTransport(fake)) as c:
        assert c.register("t-value", '"string"') == 1


def test_refused_credentials_are_a_config_error_without_the_password() -> None:
    fake = FakeRegistry(credentials=("api-key", "the-right-one"))
    settings = RegistrySettings(BASE, username="api-key", password=SecretStr(PASSWORD))
    with (
        SchemaRegistryClient(settings, transport=httpx.MockTransport(fake)) as c,
        pytest.raises(ConfigError) as err,
    ):
        c.register("t-value", '"string"')
    (line,) = err.value.problems
    assert line.startswith("publisher.schema_registry_username/password: ")
    assert "HTTP 401" in line
    assert PASSWORD not in line
    assert len(fake.requests) == 1  # a refusal is not retried


# --- retries and errors


def test_5xx_and_dropped_connections_are_retried_with_backoff() -> None:
    fake = FakeRegistry(
        faults=[
            _error(503, 50003, "Error while forwarding the request to the leader"),
            httpx.ConnectError("refused"),
            _error(500, 50001, "Error in the backend data store"),
        ]
    )
    sleeps: list[float] = []
    with client(fake, sleeps) as c:
        assert c.register("t-value", '"string"') == 1
    assert len(fake.requests) == 4
    assert sleeps == [0.25, 0.5, 1.0]


def test_retry_after_of_a_429_is_honoured() -> None:
    fake = FakeRegistry(faults=[httpx.Response(429, headers={"Retry-After": "3"})])
    sleeps: list[float] = []
    with client(fake, sleeps) as c:
        c.register("t-value", '"string"')
    assert sleeps == [3.0]


def test_a_registry_that_stays_down_is_fatal_after_max_attempts() -> None:
    fake = FakeRegistry(faults=[_error(503, 50003, "leader unavailable")] * 10)
    sleeps: list[float] = []
    with client(fake, sleeps, max_attempts=3) as c, pytest.raises(FatalError) as err:
        c.register("t-value", '"string"')
    assert len(fake.requests) == 3
    assert str(err.value) == (
        f"schema registry {BASE}: registering t-value failed after 3 attempts "
        "(HTTP 503 [50003] leader unavailable)"
    )


def test_incompatible_schema_is_fatal_and_names_the_subject() -> None:
    fake = FakeRegistry(incompatible={"dc.east.Customers-value"})
    with client(fake) as c:
        c.register("dc.east.Customers-value", '"string"')
        with pytest.raises(FatalError) as err:
            c.register("dc.east.Customers-value", envelope_schema_text(ENTITIES["Customers"]))
    assert "registering dc.east.Customers-value" in str(err.value)
    assert "incompatible" in str(err.value)
    assert "[409] Schema being registered is incompatible" in str(err.value)
    assert len(fake.requests) == 2


def test_invalid_schema_is_fatal_with_the_registrys_message() -> None:
    fake = FakeRegistry()
    with client(fake) as c, pytest.raises(FatalError, match=r"rejected the schema \(\[42201\]"):
        c.register("t-value", "{not json")


def test_url_that_is_not_the_api_base_is_a_config_error() -> None:
    fake = FakeRegistry(prefix="/apis/ccompat/v7")
    settings = RegistrySettings("http://127.0.0.1:8081")  # Apicurio without its API path
    with (
        SchemaRegistryClient(settings, transport=httpx.MockTransport(fake)) as c,
        pytest.raises(ConfigError, match=r"^publisher.schema_registry_url: .* HTTP 404"),
    ):
        c.register("t-value", '"string"')


def test_an_answer_without_an_id_is_fatal() -> None:
    fake = FakeRegistry(faults=[httpx.Response(200, text="<html>proxy login</html>")])
    with client(fake) as c, pytest.raises(FatalError, match="not a JSON object"):
        c.register("t-value", '"string"')
    fake = FakeRegistry(faults=[httpx.Response(200, json={"id": -1})])
    with client(fake) as c, pytest.raises(FatalError, match="no valid id"):
        c.register("t-value", '"string"')


def test_messages_name_the_url_without_userinfo() -> None:
    settings = RegistrySettings(f"https://key:{PASSWORD}@registry.example:8443/api")
    assert settings.safe_url == "https://registry.example:8443/api"


# --- decoding for tail


def registered_codec(fake: FakeRegistry, entity: str, topic: str) -> EntityCodec:
    with client(fake) as c:
        schema_id = c.register(subject_for(topic), envelope_schema_text(ENTITIES[entity]))
    return EntityCodec(ENTITIES[entity], wire_format="confluent", schema_id=schema_id)


def test_tail_decodes_confluent_values_looking_each_id_up_once() -> None:
    fake = FakeRegistry()
    codec = registered_codec(fake, "Customers", "dc.east.Customers")
    resolver = RegistryResolver(
        ENTITIES.values(), RegistrySettings(BASE), transport=httpx.MockTransport(fake)
    )
    fake.requests.clear()
    record = customers_record()
    for _ in range(3):
        assert resolver.decode(codec.encode(record)) == ("Customers", record)
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("GET", f"/apis/ccompat/v7/schemas/ids/{codec.schema_id}")
    ]
    # Single-object values on the same topic still decode, without the registry.
    assert resolver.decode(EntityCodec(ENTITIES["Customers"]).encode(record)) == (
        "Customers",
        record,
    )
    assert len(fake.requests) == 1


def test_tail_reports_ids_it_cannot_use_once_each() -> None:
    fake = FakeRegistry()
    with client(fake) as c:
        foreign = c.register("other-value", '{"type":"record","name":"X","fields":[]}')
    resolver = RegistryResolver(
        ENTITIES.values(), RegistrySettings(BASE), transport=httpx.MockTransport(fake)
    )
    fake.requests.clear()
    body = b"\x02"
    for _ in range(2):
        with pytest.raises(UndecodableMessage, match="no schema with id 99"):
            resolver.decode(b"\x00" + (99).to_bytes(4, "big") + body)
        with pytest.raises(
            UndecodableMessage, match=f"id {foreign} is a schema that no configured"
        ):
            resolver.decode(b"\x00" + foreign.to_bytes(4, "big") + body)
    assert len(fake.requests) == 2


def test_tail_uses_the_registry_only_when_one_is_configured() -> None:
    fake = FakeRegistry()
    codec = registered_codec(fake, "Customers", "dc.east.Customers")
    value = codec.encode(customers_record())
    with_registry = message_resolver(make_config(), transport=httpx.MockTransport(fake))
    assert with_registry.decode(value)[0] == "Customers"
    without = message_resolver(make_config(wire_format="single-object", schema_registry_url=None))
    with pytest.raises(UndecodableMessage, match="no known schema has registry id"):
        without.decode(value)


# --- configuration


def config_problems(**publisher: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        make_config(**publisher)
    return err.value.problems


def test_registry_credentials_come_in_pairs() -> None:
    (line,) = config_problems(schema_registry_username="key")
    assert line == "publisher: schema_registry_username/password: give both or neither"


def test_registry_password_is_never_sent_over_plain_http_to_a_remote_host() -> None:
    (line,) = config_problems(
        schema_registry_url="http://registry.internal:8081",
        schema_registry_username="key",
        schema_registry_password=PASSWORD,
    )
    assert "sends the registry password in clear" in line
    assert PASSWORD not in line
    # Without a password, plain http is the operator's choice.
    make_config(schema_registry_url="http://registry.internal:8081")


def test_credentials_in_the_registry_url_are_refused_without_echoing_them() -> None:
    (line,) = config_problems(schema_registry_url=f"https://key:{PASSWORD}@registry.example")
    assert "schema_registry_username/password" in line
    assert PASSWORD not in line


@pytest.mark.parametrize(
    ("password", "env"),
    [
        ("${SR_SECRET}", {"SR_SECRET": PASSWORD}),
        ("placeholder", {"DCP_PUBLISHER__SCHEMA_REGISTRY_PASSWORD": PASSWORD}),
    ],
)
def test_registry_password_from_the_environment(password: str, env: dict[str, str]) -> None:
    config = make_config(
        env,
        schema_registry_url="https://registry.example",
        schema_registry_username="key",
        schema_registry_password=password,
    )
    settings = RegistrySettings.from_config(config)
    assert settings.password is not None
    assert settings.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(config)
