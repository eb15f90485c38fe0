"""The simulator's command line: options become settings; bad options fail before listening."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.errors import ConfigError
from publisher.simulator import FaultRule, main, parse_args


def test_options_become_settings_and_fault_rules() -> None:
    config = parse_args(
        [
            "--port", "0", "--seed", "9", "--rows", "50", "--entity-rows", "Customers=1000000",
            "--history-start", "2024-01-01T00:00:00Z", "--history-end", "2024-02-01T00:00:00Z",
            "--live", "--rate", "25", "--late-fraction", "0.1", "--late-delay", "90",
            "--max-rows", "20000", "--max-in-flight", "4", "--stop-inclusive", "--shuffle",
            "--deny-entity", "Discussions", "--allow-location", "101", "--zone", "America/Regina",
            "--error-rate", "0.05", "--error-status", "500", "--retry-after", "2",
            "--drop-rate", "0.01", "--client-secret", "s3cret",
        ]
    )  # fmt: skip
    s = config.settings
    assert (config.host, config.port, s.seed) == ("127.0.0.1", 0, 9)
    assert s.rows_for("Customers") == 1_000_000
    assert s.rows_for("Activities") == 50
    assert s.history_start == datetime(2024, 1, 1, tzinfo=UTC)
    assert (s.live, s.rate, s.late_fraction, s.late_delay) == (True, 25.0, 0.1, 90.0)
    assert (s.max_rows, s.max_in_flight, s.stop_inclusive, s.order) == (20000, 4, True, "shuffled")
    assert s.denied_entities == frozenset({"Discussions"})
    assert s.allowed_location_ids == frozenset({101})
    assert s.zone == "America/Regina"
    assert s.client_secret.get_secret_value() == "s3cret"
    assert config.faults.rules == (
        FaultRule("error", rate=0.05, status=500, retry_after=2),
        FaultRule("drop", rate=0.01),
    )


def test_every_bad_option_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_args(
            ["--entity-rows", "Customers", "--tree", "1,2", "--history-start", "soon",
             "--drop-rate", "3", "--late-fraction", "2"]
        )  # fmt: skip
    text = str(caught.value)
    for fragment in ("--entity-rows", "--tree", "--history-start", "rate"):
        assert fragment in text


def test_faults_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text('{"seed": 4, "rules": [{"kind": "slow", "delay": 0.5, "count": 3}]}')
    config = parse_args(["--faults-file", str(path)])
    assert config.faults.seed == 4
    assert config.faults.rules == (FaultRule("slow", delay=0.5, count=3),)


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0"],
        ["--zone", "Mars/Olympus"],
        ["--entity-rows", "Widgets=5"],
        ["--deltas-path", "/deltas"],
        ["--history-start", "2030-01-01T00:00:00Z", "--history-end", "2029-01-01T00:00:00Z"],
    ],
)
def test_main_exits_2_with_one_line_per_problem_before_listening(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--port", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "dataconnect-publisher simulate:" in captured.err
