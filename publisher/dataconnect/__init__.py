"""HTTP client of iQmetrix DataConnect's Deltas endpoints.

``settings`` (one source's connection settings), ``auth`` (its OAuth2 token), ``limiter``
(its in-flight limit), ``statuses`` (what each answer means), ``backoff`` (when to retry) and
``client`` (the fetch loop that puts them together).
"""

from publisher.dataconnect.auth import TokenManager
from publisher.dataconnect.client import DeltasClient
from publisher.dataconnect.clock import Clock, RandomSource, SystemClock
from publisher.dataconnect.hooks import ClientHooks
from publisher.dataconnect.limiter import InFlightLimiter
from publisher.dataconnect.settings import RetrySettings, SourceHTTPSettings

__all__ = [
    "ClientHooks",
    "Clock",
    "DeltasClient",
    "InFlightLimiter",
    "RandomSource",
    "RetrySettings",
    "SourceHTTPSettings",
    "SystemClock",
    "TokenManager",
]
