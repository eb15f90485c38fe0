"""The in-process adapter: an ``httpx.MockTransport`` that plays the simulator.

Use it in unit tests of the client: ``httpx.Client(transport=sim.transport(), base_url=...)``.
A dropped connection raises ``httpx.RemoteProtocolError`` as a real socket would: at once for
``drop``, while reading the body for ``drop_mid_body``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Protocol

import httpx

from publisher.simulator.responses import SimResponse

_CUT = "peer closed connection without sending complete message body"


class Handler(Protocol):
    """Anything with the simulator's ``handle`` signature."""

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> SimResponse:
        """Answer one request."""
        ...


class _BrokenStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Yields the first part of a body, then fails like a connection closed by the peer."""

    def __init__(self, part: bytes) -> None:
        self._part = part

    def __iter__(self) -> Iterator[bytes]:
        yield self._part
        raise httpx.RemoteProtocolError(_CUT)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._part
        raise httpx.RemoteProtocolError(_CUT)


def _first_values(params: httpx.QueryParams) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in params.multi_items():
        out.setdefault(name, value)
    return out


def mock_transport(sim: Handler) -> httpx.MockTransport:
    """A transport whose every request is answered by ``sim.handle``."""

    def handler(request: httpx.Request) -> httpx.Response:
        response = sim.handle(
            request.method,
            request.url.path,
            _first_values(request.url.params),
            dict(request.headers),
            request.content,
        )
        if response.drop == "before":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        headers = {**response.headers, "Content-Length": str(len(response.body))}
        if response.drop == "mid_body":
            return httpx.Response(
                response.status,
                headers=headers,
                stream=_BrokenStream(response.body[: len(response.body) // 2]),
                request=request,
            )
        return httpx.Response(
            response.status, headers=headers, content=response.body, request=request
        )

    return httpx.MockTransport(handler)
