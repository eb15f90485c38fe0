"""Logging set-up: JSON lines for machines, plain text for people, secrets scrubbed from both.

``configure_logging`` installs one handler on the root logger. Each record becomes either a
JSON object on one line (``ts`` ISO-8601 UTC, ``level``, ``logger``, ``message``, the
``extra=`` fields such as ``source``, ``entity``, ``window``, and ``exc_info`` text) or a
readable text line; ``"auto"`` picks text on a terminal and JSON otherwise.

Redaction is the last line of defence, after ``SecretStr``: it scrubs the values passed to
:func:`register_secret` (and their URL- and JSON-escaped spellings) plus obvious patterns
(``Bearer`` tokens, ``Authorization`` headers, ``password=``, ``client_secret=``,
``access_token``-style ``key=value`` pairs and JSON or dict fields) from the message, its
arguments, extra fields, exception text and stack text, before any formatter sees them.

librdkafka's own lines go through :class:`RepeatFilter`: one line of each kind per 30 s, with
a count of the repeats, instead of one per reconnect attempt while a broker is down.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import quote, quote_plus

import orjson
from pydantic import SecretStr

REDACTED = "[REDACTED]"
#: Shorter values cannot be scrubbed without mangling ordinary words in every line; the
#: patterns below still catch them where they appear as ``password=...`` and the like.
MIN_SECRET_LENGTH = 4

_SENSITIVE_NAMES = (
    r"password|passwd|pwd|client_secret|secret|access_token|refresh_token|id_token"
    r"|api_key|apikey|token"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    # an Authorization header of any scheme (Basic, Digest, ...), as text or in a dict
    (
        re.compile(r"\b(Authorization[\"']?\s*[:=]\s*[\"']?)(?:[A-Za-z]+\s+)?[^\s\"',;]+", re.I),
        rf"\1{REDACTED}",
    ),
    # form bodies, query strings, "key=value" in prose; stops at & and whitespace
    (re.compile(rf"\b({_SENSITIVE_NAMES})=[^&\s'\"]+", re.IGNORECASE), rf"\1={REDACTED}"),
    # JSON objects and Python dict reprs: "access_token": "..." or 'password': '...'
    (
        re.compile(
            rf"""(["'])({_SENSITIVE_NAMES})\1(\s*:\s*)(["'])(?:\\.|(?!\4).)*\4""", re.IGNORECASE
        ),
        lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{REDACTED}{m[4]}",
    ),
)

# Every pattern above needs one of these words; most lines have none and skip the regexes.
_KEYWORDS = re.compile(f"bearer|authorization|{_SENSITIVE_NAMES}")
#: Set on a record by RedactionFilter, so the formatter does not scrub the same text twice.
_SCRUBBED_BY = "_dcp_scrubbed_by"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def secret_spellings(raw: str) -> set[str]:
    """Every way ``raw`` may show up in text we quote: as is, URL-encoded (form bodies,
    query strings), JSON-escaped and as a Python repr (echoed bodies, dict reprs)."""
    return {raw, quote(raw, safe=""), quote_plus(raw), json.dumps(raw)[1:-1], repr(raw)[1:-1]}


class Redactor:
    """Scrubs registered secret values and secret-looking patterns from text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str | SecretStr) -> None:
        """Scrub ``value`` from now on, also as it looks URL-encoded or JSON-escaped."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if len(raw.strip()) < MIN_SECRET_LENGTH:
            return
        spellings = secret_spellings(raw)
        with self._lock:
            self._secrets |= spellings
            # Longest first, so a secret that contains another is scrubbed whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret and secret-looking value replaced."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        if _KEYWORDS.search(text.lower()):
            for regex, replacement in _PATTERNS:
                text = regex.sub(replacement, text)
        return text

    def scrub_value(self, value: Any) -> Any:
        """Scrub strings inside JSON-like values; other objects become scrubbed strings."""
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float | datetime):
            return value
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub_value(v) for v in value]
        return self.scrub(str(value))


_default_redactor = Redactor()


def register_secret(value: str | SecretStr) -> None:
    """Scrub this value from every log line from now on (the process-wide redactor)."""
    _default_redactor.register(value)


class RedactionFilter(logging.Filter):
    """Scrubs a record in place: message with its args, extras, exception and stack text.

    Attached to a handler, it runs before that handler's formatter; because the record is
    scrubbed in place, handlers that run after it see the scrubbed record too.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor or _default_redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self._redactor.scrub
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # Arguments that do not fit the format: keep both, scrubbed, rather than let
            # logging's error report print the raw arguments to stderr.
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key in record.__dict__.keys() - _RECORD_ATTRS:
            record.__dict__[key] = self._redactor.scrub_value(record.__dict__[key])
        setattr(record, _SCRUBBED_BY, self._redactor)
        return True


class RepeatFilter(logging.Filter):
    """Lets one record of each kind through per ``window`` seconds and counts the rest.

    librdkafka logs every failed reconnect: with a broker down, each client repeats the same
    line many times a second for as long as the outage lasts. A record's kind is its logger,
    level and message with digits masked (ports and "after 0ms" vary). The first record of a
    kind passes; the ones within ``window`` seconds after it are dropped and counted, and the
    next one after that passes with "(repeated N times in the last Ws)" appended.
    """

    def __init__(self, window: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # let the redaction filter report the malformed record
        key = (record.name, record.levelno, _DIGITS.sub("#", message))
        now = self._clock()
        with self._lock:
            first, dropped = self._seen.get(key, (now - self.window - 1, 0))
            if now - first <= self.window:
                self._seen[key] = (first, dropped + 1)
                return False
            if len(self._seen) > _REPEAT_KINDS:  # bounded: forget kinds not seen lately
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] <= self.window}
            self._seen[key] = (now, 0)
        if dropped:
            record.msg = f"{message} (repeated {dropped} times in the last {self.window:g}s)"
            record.args = None
        return True


_DIGITS = re.compile(r"\d+")
_REPEAT_KINDS = 1000


def _timestamp(record: logging.LogRecord) -> str:
    ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return ts.replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and k[0] != "_"}


def _noop(value: Any) -> Any:
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, extras, exc_info, stack_info."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor or _default_redactor

    def format(self, record: logging.LogRecord) -> str:
        done = getattr(record, _SCRUBBED_BY, None) is self._redactor
        scrub: Callable[[Any], Any] = _noop if done else self._redactor.scrub
        out: dict[str, Any] = (_noop if done else self._redactor.scrub_value)(_extras(record))
        out.update(
            ts=_timestamp(record),
            level=record.levelname,
            logger=record.name,
            message=scrub(record.getMessage()),
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc_info"] = scrub(record.exc_text)
        if record.stack_info:
            out["stack_info"] = scrub(record.stack_info)
        return orjson.dumps(out, default=lambda o: self._redactor.scrub(str(o))).decode()


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO publisher.poll: message source=x entity=y``."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor or _default_redactor

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        for key, value in _extras(record).items():
            shown = str(value)
            line += f" {key}={json.dumps(shown) if not shown or ' ' in shown else shown}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        if getattr(record, _SCRUBBED_BY, None) is self._redactor:
            return line
        return self._redactor.scrub(line)


_installed: logging.Handler | None = None


def configure_logging(
    level: str | int = "INFO",
    fmt: Literal["auto", "json", "text"] = "auto",
    stream: TextIO | None = None,
    redactor: Redactor | None = None,
) -> logging.Handler:
    """Send all logging to ``stream`` (default stderr) as JSON lines or text, scrubbed.

    Replaces the handler an earlier call installed, so calling it twice does not double
    every line. Returns the handler. Raises ``ValueError`` for an unknown level or format.
    """
    global _installed  # noqa: PLW0603 (logging is process-wide by nature)
    if isinstance(level, str):
        levels = logging.getLevelNamesMapping()
        if level.upper() not in levels:
            raise ValueError(f"unknown log level {level!r}; use one of {sorted(levels)}")
        level = levels[level.upper()]
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        isatty = getattr(out, "isatty", None)
        fmt = "text" if isatty is not None and isatty() else "json"
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(redactor)
    elif fmt == "text":
        formatter = TextFormatter(redactor)
    else:
        raise ValueError(f"unknown log format {fmt!r}; use auto, json or text")
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(RedactionFilter(redactor))
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level)
    _installed = handler
    # httpx logs every request at INFO and httpcore every socket event at DEBUG; the publisher
    # logs what matters (retries, failures). Asking for DEBUG shows them again.
    quiet = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
    # librdkafka repeats a failing reconnect many times a second while a broker is down.
    rdkafka = logging.getLogger("librdkafka")
    if not any(isinstance(f, RepeatFilter) for f in rdkafka.filters):
        rdkafka.addFilter(RepeatFilter())
    # An uncaught error in a thread goes through the scrubbing handler, not raw to stderr.
    threading.excepthook = _log_thread_exception
    return handler


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("publisher").critical(
        "uncaught error in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
