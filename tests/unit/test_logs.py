"""Log output as an operator or a log shipper reads it: parsed JSON lines, and no secrets."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus

import pytest
from pydantic import SecretStr

from publisher.logs import (
    REDACTED,
    JsonFormatter,
    Redactor,
    RepeatFilter,
    TextFormatter,
    configure_logging,
    register_secret,
)


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_utc_time_and_extras() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    window = {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T12:05:00Z"}
    before = datetime.now(UTC)
    logging.getLogger("publisher.poll").info(
        "committed %d events", 42, extra={"source": "prod", "entity": "Customers", "window": window}
    )
    logging.getLogger("publisher.poll").debug("below the level")
    [record] = lines(out)
    assert record["message"] == "committed 42 events"
    assert record["level"] == "INFO"
    assert record["logger"] == "publisher.poll"
    assert (record["source"], record["entity"], record["window"]) == ("prod", "Customers", window)
    ts = str(record["ts"])
    assert ts.endswith("Z")
    parsed = datetime.fromisoformat(ts)
    assert parsed.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= parsed <= datetime.now(UTC) + timedelta(seconds=1)


def test_json_exception_is_one_line_with_the_traceback() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    try:
        raise KeyError("CustomerID")
    except KeyError:
        logging.getLogger("publisher.map").exception("row skipped", extra={"entity": "Customers"})
    [record] = lines(out)
    assert "Traceback" in str(record["exc_info"])
    assert "KeyError: 'CustomerID'" in str(record["exc_info"])
    assert record["entity"] == "Customers"


def test_auto_picks_text_on_a_terminal_and_json_otherwise() -> None:
    tty, pipe = TtyStream(), io.StringIO()
    configure_logging("INFO", "auto", tty)
    logging.getLogger("publisher.cli").info("started", extra={"source": "prod"})
    configure_logging("INFO", "auto", pipe)
    logging.getLogger("publisher.cli").info("started", extra={"source": "prod"})
    text = tty.getvalue()
    assert text.endswith("INFO    publisher.cli: started source=prod\n")
    assert text[:4].isdigit()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert lines(pipe)[0]["message"] == "started"
    # the second call replaced the first handler instead of adding one
    assert tty.getvalue() == text


def test_bad_level_and_format_are_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging("LOUD", "json", io.StringIO())
    with pytest.raises(ValueError, match="format"):
        configure_logging("INFO", "xml", io.StringIO())  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_registered_secret_never_appears_even_in_tracebacks(fmt: str) -> None:
    secret = "s3cr3t-" + secrets.token_hex(8) + "/+&"
    register_secret(SecretStr(secret))
    out = io.StringIO()
    configure_logging("DEBUG", fmt, out)  # type: ignore[arg-type]
    log = logging.getLogger("publisher.auth")
    log.info("plain %s", secret)
    log.info("in a message " + secret)
    log.warning("in extras", extra={"source": "prod", "body": {"nested": [secret]}})
    log.info("form body: client_secret%%3D%s", quote(secret, safe=""))
    log.info("form body: pw=%s", quote_plus(secret))
    try:
        try:
            raise ValueError(f"token endpoint said no to {secret}")
        except ValueError as inner:
            raise RuntimeError(f"wrapped {secret!r}") from inner
    except RuntimeError:
        log.exception("auth failed")
    log.info("stack", stack_info=True, extra={"detail": secret})
    output = out.getvalue()
    assert secret not in output
    assert quote(secret, safe="") not in output
    assert quote_plus(secret) not in output
    assert secret[:12] not in output  # not even a prefix of it
    assert output.count(REDACTED) >= 8
    assert "token endpoint said no to [REDACTED]" in output  # the rest of the line survives
    if fmt == "json":
        records = lines(out)  # still valid JSON after scrubbing
        assert records[2]["body"] == {"nested": [REDACTED]}


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize(
    ("message", "leak", "kept"),
    [
        (
            "GET /deltas Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc-_x",
            "eyJhbGciOi",
            "GET /deltas",
        ),
        ("headers {'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz", "headers"),
        ("body grant_type=password&client_id=c1&client_secret=cs-9z&password=p4ss", "cs-9z", "c1"),
        ("body grant_type=password&username=u&password=p4ss&x=1", "p4ss", "grant_type=password"),
        (
            'got {"access_token": "at-123", "expires_in": 43199, "refresh_token": "rt-456"}',
            "at-123",
            '"expires_in": 43199',
        ),
        ('got {"access_token": "at-1", "refresh_token": "rt-456"}', "rt-456", "got"),
        ("config {'password': 'p\\'w', 'user': 'bob'}", "p\\'w", "'user': 'bob'"),
    ],
)
def test_secret_patterns_are_scrubbed(fmt: str, message: str, leak: str, kept: str) -> None:
    out = io.StringIO()
    configure_logging("INFO", fmt, out, redactor=Redactor())  # type: ignore[arg-type]
    log = logging.getLogger("publisher.http")
    log.info("%s", message)
    try:
        raise ConnectionError(message)
    except ConnectionError:
        log.exception("request failed")
    output = out.getvalue()
    assert leak not in output
    if fmt == "json":
        message_line, exception_line = lines(out)  # still one valid JSON object per line
        assert kept in str(message_line["message"])
        assert kept in str(exception_line["exc_info"])
    else:
        assert output.count(kept) >= 2


def test_scrubbing_is_idempotent_and_leaves_ordinary_text_alone() -> None:
    redactor = Redactor()
    redactor.register("abc")  # too short to scrub everywhere: ignored
    text = "fetched 120 rows for Customers abc window=2024-05-01T12:00:00Z op=c"
    assert redactor.scrub(text) == text
    once = redactor.scrub("Bearer xyz123 password=pw")
    assert once == f"Bearer {REDACTED} password={REDACTED}"
    assert redactor.scrub(once) == once


def test_other_handlers_see_the_scrubbed_record() -> None:
    secret = "other-" + secrets.token_hex(8)
    register_secret(secret)
    configure_logging("INFO", "json", io.StringIO())
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # a plain Formatter renders exc_text, which the filter already scrubbed
            extras = (record.msg, record.args, vars(record)["detail"])
            seen.append(logging.Formatter().format(record) + repr(extras))

    capture = Capture()
    logging.getLogger().addHandler(capture)
    try:
        try:
            raise OSError(secret)
        except OSError:
            logging.getLogger("publisher").exception(
                "leaked? %s", secret, extra={"detail": {"why": secret}}
            )
    finally:
        logging.getLogger().removeHandler(capture)
    [output] = seen
    assert "leaked? [REDACTED]" in output
    assert secret not in output


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
def test_formatters_scrub_on_their_own_without_the_filter(formatter: type) -> None:
    redactor = Redactor()
    redactor.register("standalone-secret-value")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(redactor))
    log = logging.getLogger("publisher.standalone")
    log.addHandler(handler)
    try:
        log.error(
            "refresh_token=%s", "rt-999", extra={"detail": "standalone-secret-value is wrong"}
        )
    finally:
        log.removeHandler(handler)
    output = out.getvalue()
    assert "rt-999" not in output
    assert "standalone-secret-value" not in output
    assert "refresh_token=[REDACTED]" in output


@pytest.fixture(autouse=True)
def restore_global_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the tests after this."""
    import threading

    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    hook = threading.excepthook
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    threading.excepthook = hook


def test_http_client_chatter_is_quiet_unless_debug_and_thread_errors_are_scrubbed() -> None:
    import threading

    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    register_secret("thread-secret-value")

    def boom() -> None:
        raise RuntimeError("failed with password=thread-secret-value")

    t = threading.Thread(target=boom, name="worker-1")
    t.start()
    t.join()
    out = stream.getvalue()
    assert "uncaught error in thread worker-1" in out
    assert "thread-secret-value" not in out
    configure_logging("DEBUG", "json", io.StringIO())
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.DEBUG


def _record(message: str, *args: object, name: str = "librdkafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, None)


def test_repeated_librdkafka_lines_pass_once_per_window_with_a_count() -> None:
    now = [0.0]
    repeats = RepeatFilter(window=30, clock=lambda: now[0])
    fail = "FAIL [%s] 127.0.0.1:%d/bootstrap: Connect failed: Connection refused (after %dms)"
    passed = []
    for i in range(600):  # 20 attempts a second for 30 s, ports and timings varying
        now[0] = i * 0.05
        record = _record(fail, "rdkafka#consumer-4", 55697 + i % 3, i % 2)
        if repeats.filter(record):
            passed.append(record.getMessage())
    now[0] = 30.5
    later = _record(fail, "rdkafka#consumer-4", 55697, 0)
    assert repeats.filter(later)
    assert passed == [
        "FAIL [rdkafka#consumer-4] 127.0.0.1:55697/bootstrap: Connect failed: "
        "Connection refused (after 0ms)"
    ]
    assert later.getMessage().endswith("(after 0ms) (repeated 599 times in the last 30s)")
    # Another kind of line is not held back by the first one.
    assert repeats.filter(_record("FAIL [%s] SSL handshake failed", "rdkafka#producer-1"))


def test_only_librdkafka_lines_are_collapsed() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    for _ in range(5):
        logging.getLogger("librdkafka").error("FAIL broker down")
        logging.getLogger("publisher.kafka").warning("commit_transaction: retrying")
    messages = [line["message"] for line in lines(stream)]
    assert messages.count("FAIL broker down") == 1
    assert messages.count("commit_transaction: retrying") == 5
