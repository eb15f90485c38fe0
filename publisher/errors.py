"""The one exception tree of the publisher, split by what the caller should do.

::

    PublisherError
    ├── RetryableError          transient: retry the same call with backoff
    │   ├── SourceUnavailable   DataConnect 5xx, timeouts, dropped connections, bad JSON body
    │   └── SourceBusy          DataConnect 429: too many requests in flight
    ├── WindowTooLarge          DataConnect 413: split the window, never retry it whole
    ├── RowRejected             skip this row: it goes to the dead-letter topic with a reason
    ├── EntityStopped           stop this (source, entity) stream, keep the others running
    │   ├── SourceRequestRejected   DataConnect 400
    │   ├── SourceAccessDenied      DataConnect 403 / 404
    │   ├── SourceAuthFailed        token endpoint refused the credentials
    │   └── SourceTLSFailed         the server's TLS certificate did not verify
    └── FatalError              stop the process with a non-zero exit code
        ├── ConfigError         bad settings, reported before any connection is made
        ├── ProducerFenced      another instance took our transactional.id
        └── KafkaFatal          any other non-retriable, non-abortable Kafka error

Messages never carry secrets: credentials live in ``pydantic.SecretStr`` and are only
unwrapped at the moment a request body is built.
"""

from __future__ import annotations

#: Process exit codes, one definition for the CLI and the runner (documented in the README).
EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_FENCED = 3


class PublisherError(Exception):
    """Base class of every error the publisher raises on purpose."""


class RetryableError(PublisherError):
    """A transient failure: the same call may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceUnavailable(RetryableError):
    """DataConnect answered 5xx, timed out, dropped the connection or sent an unreadable body."""


class SourceBusy(RetryableError):
    """DataConnect answered 429: our account has too many requests in flight."""


class WindowTooLarge(PublisherError):
    """DataConnect answered 413: it estimates the window returns too many rows."""


class RowRejected(PublisherError):
    """A row that cannot become an event; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[RowRejected], tuple[str, str]]:
        # Rejections come back from decode processes pickled; the default would call
        # RowRejected(message) with one argument.
        return (type(self), (self.reason, self.detail))


class EntityStopped(PublisherError):
    """This (source, entity) stream cannot go on until an operator acts."""

    #: Stable reason code for metrics and alerts.
    code = "stopped"


class SourceRequestRejected(EntityStopped):
    """DataConnect answered 400: it did not understand the request."""

    code = "request_rejected"


class SourceAccessDenied(EntityStopped):
    """DataConnect answered 403 or 404 for this entity or location."""

    code = "access_denied"


class SourceAuthFailed(EntityStopped):
    """The token endpoint refused the configured credentials."""

    code = "auth_failed"


class SourceTLSFailed(EntityStopped):
    """DataConnect's (or the token endpoint's) certificate did not verify. Retrying cannot
    help, and no credentials were sent: stop until an operator fixes the trust store or URL."""

    code = "tls_error"


class FatalError(PublisherError):
    """The process must stop with a non-zero exit code."""


class ConfigError(FatalError):
    """One or more settings are invalid; each problem is one line of the message."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ProducerFenced(FatalError):
    """Another publisher instance started with the same transactional.id."""


class KafkaFatal(FatalError):
    """A Kafka error that is neither retriable nor abortable."""
