"""The one place that turns DataConnect's answers into the publisher's exception tree.

Every HTTP status, transport error and unreadable body of the Deltas and token endpoints
becomes a :class:`Failure`: the exception to raise (from :mod:`publisher.errors`), what the
client does about it (:class:`Action`) and a short code for logs and metric labels.

=============================  ===========================  ================================
Deltas answer                  exception                    action
=============================  ===========================  ================================
401                            SourceAuthFailed             new token, send again once
400, other 1xx/3xx/4xx         SourceRequestRejected        raise (stops the entity)
403, 404                       SourceAccessDenied           raise (stops the entity)
413                            WindowTooLarge               raise (the caller splits)
429                            SourceBusy                   shrink in-flight limit, retry
408, 5xx                       SourceUnavailable            retry with backoff
timeout, dropped connection    SourceUnavailable            retry with backoff
2xx, body not a JSON array     SourceUnavailable            retry with backoff
=============================  ===========================  ================================

Token endpoint: 408/429/5xx, transport errors and unreadable answers are retried like the
above; ``invalid_grant`` on a refresh falls back to the password grant; anything else is
``SourceAuthFailed`` with a hint naming the settings to check, never their values.

Messages name the source, entity, window and status and quote the server's ``Message``
(one line, truncated). Text that comes from the server is scrubbed of the secrets the caller
passes in, in case a server echoes a credential or token back.
"""

from __future__ import annotations

import enum
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from publisher.errors import (
    PublisherError,
    RetryableError,
    SourceAccessDenied,
    SourceAuthFailed,
    SourceBusy,
    SourceRequestRejected,
    SourceTLSFailed,
    SourceUnavailable,
    WindowTooLarge,
)
from publisher.logs import secret_spellings

#: Longest server text quoted in a message.
MESSAGE_LIMIT = 300
_WHITESPACE = re.compile(r"\s+")
_OAUTH_CODE = re.compile(r"[a-z_]{1,64}")


class Action(enum.Enum):
    """What the client does with a failed request."""

    RETRY = "retry"  # back off and send it again
    THROTTLE = "throttle"  # shrink the source's in-flight limit, back off, send again
    REAUTHENTICATE = "reauthenticate"  # get a new token and send again, once
    RAISE = "raise"  # give up now


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed request: the error to raise, the action, and a short lowercase code."""

    kind: str  # the HTTP status ("503") or an error kind ("timeout", "malformed_body")
    action: Action
    error: PublisherError

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait, if it said."""
        return self.error.retry_after if isinstance(self.error, RetryableError) else None


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a Deltas error message names: the source, the entity and the window as sent."""

    source: str
    entity: str
    start: str
    stop: str

    def describe(self) -> str:
        """``DataConnect <source> <entity> StartDate=... StopDate=...``."""
        return (
            f"DataConnect {self.source} {self.entity} StartDate={self.start} StopDate={self.stop}"
        )


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """One line of at most MESSAGE_LIMIT characters, with every secret replaced by ``***``
    in every spelling a server may echo it in (URL-encoded, JSON-escaped, repr), longest
    first so a secret containing another is replaced whole."""
    spellings = {s for secret in secrets if secret for s in secret_spellings(secret)}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, "***")
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    return text


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def server_message(body: bytes, secrets: Iterable[str] = ()) -> str | None:
    """The ``Message`` of a DataConnect ``{"Error": true, "Message": ...}`` body, scrubbed."""
    data = _json_object(body)
    if data is None or not isinstance(data.get("Message"), str):
        return None
    return scrub(data["Message"], secrets) or None


def _with_message(text: str, body: bytes, secrets: Iterable[str]) -> str:
    message = server_message(body, secrets)
    return f"{text}: {message}" if message else text


def failure_for_status(
    status: int,
    body: bytes,
    retry_after: float | None,
    ctx: RequestContext,
    secrets: Iterable[str] = (),
) -> Failure:
    """Map a non-2xx answer of a Deltas endpoint."""
    text = _with_message(f"{ctx.describe()}: HTTP {status}", body, secrets)
    kind = str(status)
    if status == 401:
        return Failure(kind, Action.REAUTHENTICATE, SourceAuthFailed(f"{text} (token refused)"))
    if status == 400:
        return Failure(kind, Action.RAISE, SourceRequestRejected(text))
    if status in (403, 404):
        return Failure(kind, Action.RAISE, SourceAccessDenied(text))
    if status == 413:
        return Failure(kind, Action.RAISE, WindowTooLarge(text))
    if status == 429:
        return Failure(kind, Action.THROTTLE, SourceBusy(text, retry_after))
    if status == 408 or status >= 500:
        return Failure(kind, Action.RETRY, SourceUnavailable(text, retry_after))
    # A redirect or an undocumented 4xx: most likely a wrong base_url or path_template,
    # which retrying cannot fix.
    return Failure(kind, Action.RAISE, SourceRequestRejected(f"{text} (unexpected status)"))


def transport_kind(exc: httpx.RequestError) -> str:
    """A short code for an exception raised while sending a request or reading its answer."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "connection_dropped"  # includes a body cut short mid-transfer
    if isinstance(exc, httpx.DecodingError):
        return "malformed_body"  # e.g. a broken gzip stream
    return "network_error"


def _certificate_rejected(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # the ssl error sits a few causes/contexts down httpx's chain
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transport_failure(exc: httpx.RequestError, where: str) -> Failure:
    if _certificate_rejected(exc) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        # Not transient: the TLS handshake failed before anything (credentials included) was
        # sent. The stream stops with this one message instead of retrying forever.
        stopped = SourceTLSFailed(
            f"{where}: the server's TLS certificate did not verify ({scrub(str(exc))}); "
            "fix the URL or the trust store (verify_tls stays on)"
        )
        stopped.__cause__ = exc
        return Failure("tls_error", Action.RAISE, stopped)
    kind = transport_kind(exc)
    error = SourceUnavailable(f"{where}: {kind} ({type(exc).__name__}: {scrub(str(exc))})")
    error.__cause__ = exc
    return Failure(kind, Action.RETRY, error)


def failure_for_transport(exc: httpx.RequestError, ctx: RequestContext) -> Failure:
    """Map a timeout, refused or dropped connection, or undecodable stream (retried)."""
    return _transport_failure(exc, ctx.describe())


def failure_for_body(
    problem: str, body: bytes, ctx: RequestContext, secrets: Iterable[str] = ()
) -> Failure:
    """Map a 2xx answer whose body is not a JSON array of objects (retried)."""
    text = _with_message(f"{ctx.describe()}: unreadable answer ({problem})", body, secrets)
    return Failure("malformed_body", Action.RETRY, SourceUnavailable(text))


def gave_up(failure: Failure, attempts: int, elapsed: float) -> PublisherError:
    """The error to raise when retries are exhausted: the last one, with the count."""
    error = failure.error
    text = f"{error} (gave up after {attempts} attempts in {elapsed:.1f} s)"
    if isinstance(error, RetryableError):
        return type(error)(text, retry_after=error.retry_after)
    return type(error)(text)


# -- token endpoint ------------------------------------------------------------------------


def _token_where(source: str, grant: str) -> str:
    return f"DataConnect {source}: token endpoint ({grant} grant)"


def token_failure_for_status(
    status: int, body: bytes, grant: str, source: str, secrets: Iterable[str] = ()
) -> Failure:
    """Map a non-2xx answer of the token endpoint for a ``password`` or ``refresh_token`` grant.

    OAuth2 servers answer 400 with ``{"error": code, "error_description": text}``.
    """
    secrets = tuple(secrets)
    data = _json_object(body) or {}
    code = data.get("error")
    code = code if isinstance(code, str) and _OAUTH_CODE.fullmatch(code) else None
    description = data.get("error_description")
    description = scrub(description, secrets) if isinstance(description, str) else None
    detail = " ".join(p for p in (f"HTTP {status}", code) if p)
    if description:
        detail = f"{detail}: {description}"
    where = _token_where(source, grant)
    kind = str(status)
    if status in (408, 429) or status >= 500:
        return Failure(kind, Action.RETRY, SourceUnavailable(f"{where}: {detail}"))
    if grant == "refresh_token" and code == "invalid_grant":
        # The refresh token expired or was revoked: a password grant can still succeed.
        error = SourceAuthFailed(f"{where} refused the refresh token ({detail})")
        return Failure(kind, Action.REAUTHENTICATE, error)
    if code in ("invalid_client", "unauthorized_client"):
        hint = "check client_id and client_secret"
    elif grant == "password" and code == "invalid_grant":
        hint = "check username and password"
    else:
        hint = "check token_url and the credentials"
    return Failure(
        kind, Action.RAISE, SourceAuthFailed(f"{where} refused the request ({detail}); {hint}")
    )


def token_failure_for_transport(exc: httpx.RequestError, grant: str, source: str) -> Failure:
    """Map a transport error while talking to the token endpoint (retried)."""
    return _transport_failure(exc, _token_where(source, grant))


def token_failure_for_body(problem: str, grant: str, source: str) -> Failure:
    """Map a 2xx token answer without a usable access token (retried)."""
    error = SourceUnavailable(f"{_token_where(source, grant)}: unreadable answer ({problem})")
    return Failure("malformed_body", Action.RETRY, error)
