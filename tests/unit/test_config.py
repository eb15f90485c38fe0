"""Configuration: one clear line per problem, secrets never echoed, env for secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from publisher.cli import main
from publisher.config import load_config, parse_config
from publisher.errors import ConfigError


def minimal(**source: Any) -> dict[str, Any]:
    src = {
        "name": "store-a",
        "base_url": "https://dataconnect.example.test",
        "token_url": "https://accounts.example.test/v1/oauth2/token",
        "client_id": "cid",
        "client_secret": "${SECRET}",
        "username": "user",
        "password": "${PASSWORD}",
        "entities": ["Customers"],
    }
    src.update(source)
    return {
        "publisher": {"transactional_id": "dcp-test"},
        "windows": {"start_from": "2026-01-01T00:00:00Z"},
        "sources": [src],
    }


ENV = {"SECRET": "s3cr3t-value", "PASSWORD": "hunter2-value"}


def problems(doc: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, ENV if env is None else env)
    return info.value.problems


def test_valid_config_reads_secrets_from_env_and_hides_them() -> None:
    config = parse_config(minimal(), ENV)
    source = config.sources[0]
    assert source.client_secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config)
    assert "hunter2-value" not in repr(config)
    assert config.topic_for("store-a", "Customers") == "dataconnect.store-a.Customers"


def test_missing_env_var_is_one_line_naming_the_setting() -> None:
    assert problems(minimal(), {"SECRET": "x"}) == [
        "sources[0].password: environment variable PASSWORD is not set"
    ]


def test_plain_http_to_a_remote_host_is_refused_unless_allowed() -> None:
    lines = problems(minimal(base_url="http://dataconnect.example.test"))
    assert len(lines) == 1
    assert lines[0].startswith("sources[0]: base_url: plain http to a non-loopback host")
    parse_config(minimal(base_url="http://dataconnect.example.test", allow_insecure_http=True), ENV)
    parse_config(minimal(base_url="http://127.0.0.1:8700"), ENV)  # loopback is fine


def test_every_problem_is_reported_at_once_without_echoing_values() -> None:
    doc = minimal(entities=["Customers", "Nope"], timezone="Mars/Olympus")
    doc["publisher"]["key_template"] = "{source}"
    doc["windows"]["min_window_seconds"] = 100
    doc["windows"]["max_window_seconds"] = 10
    doc["windows"]["initial_window_seconds"] = 50
    lines = problems(doc)
    text = "\n".join(lines)
    assert "timezone: unknown time zone 'Mars/Olympus'" in text
    assert "publisher: key_template: must contain {id}" in text
    assert "min_window_seconds: larger than max_window_seconds" in text
    assert "s3cr3t-value" not in text


def test_sources_sharing_a_topic_must_put_the_source_in_the_key() -> None:
    doc = minimal()
    doc["sources"].append(dict(doc["sources"][0], name="store-b"))
    doc["publisher"]["topic_template"] = "dataconnect.{entity}"
    assert problems(doc) == [
        "config: publisher.key_template: several sources share each entity topic "
        "(topic_template has no {source}), so the key must contain {source}"
    ]
    doc["publisher"]["key_template"] = "{source}:{id}"
    parse_config(doc, ENV)


def test_unknown_entity_lists_the_known_ones() -> None:
    lines = problems(minimal(entities=["Customer"]))
    assert lines == [
        "sources[0].entities: unknown entity 'Customer' (known: AccountsReceivable, "
        "Activities, Customers, Discussions, FollowUps)"
    ]


def test_env_override_of_a_section_value() -> None:
    env = {**ENV, "DCP_KAFKA__BOOTSTRAP_SERVERS": "broker-1:9092"}
    assert parse_config(minimal(), env).kafka.bootstrap_servers == "broker-1:9092"


def test_cli_exits_2_with_one_line_per_problem_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[publisher]\ntransactional_id = "x"\n[windows]\nstart_from = 2026-01-01T00:00:00\n'
        "[[sources]]\nname = 'a'\nbase_url = 'ftp://nowhere'\nclient_id = 'c'\n"
        "client_secret = 's'\nusername = 'u'\npassword = 'p'\nentities = ['Customers']\n"
    )
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "config error: windows: start_from: give a time zone, e.g. 2024-01-01T00:00:00Z",
        "config error: sources[0]: base_url: not an http(s) URL: 'ftp://nowhere'",
    ]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert info.value.problems[0].endswith("missing.toml: cannot read (No such file or directory)")


def test_progress_interval_is_a_setting_and_must_be_positive() -> None:
    base = {
        "publisher": {"transactional_id": "t"},
        "windows": {"start_from": "2024-01-01T00:00:00Z"},
        "sources": [
            {
                "name": "s",
                "client_id": "c",
                "client_secret": "secret-1",
                "username": "u",
                "password": "password-1",
                "entities": ["Customers"],
            }
        ],
    }
    assert parse_config(base, env={}).logging.progress_interval_seconds == 30
    env = {"DCP_LOGGING__PROGRESS_INTERVAL_SECONDS": "5"}
    assert parse_config(base, env=env).logging.progress_interval_seconds == 5
    with pytest.raises(ConfigError) as refused:
        parse_config({**base, "logging": {"progress_interval_seconds": 0}}, env={})
    assert any("logging.progress_interval_seconds" in p for p in refused.value.problems)


def test_the_record_size_limit_defaults_under_kafkas_own_and_refuses_a_tiny_one() -> None:
    assert parse_config(minimal(), ENV).publisher.max_record_bytes == 1_000_000
    doc = minimal()
    doc["publisher"]["max_record_bytes"] = 100  # smaller than any real record
    assert [p for p in problems(doc) if p.startswith("publisher.max_record_bytes")]
