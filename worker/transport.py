"""The HTTP client of a worker process, and what its errors mean.

Two transports, chosen by PASSTHRU_HTTP_TRANSPORT: `aiohttp` (httpx's API over aiohttp's
connection pool, the default: it keeps its speed with hundreds of requests in flight) and
`httpx` (httpx's own pool). Both raise httpx exceptions; `failure_kind` says whether the
upstream may have received the request, which decides whether a POST may be re-sent.
"""

from __future__ import annotations

from typing import Literal

import httpx

TransportKind = Literal["aiohttp", "httpx"]


def make_async_client(
    kind: TransportKind, *, max_connections: int, connect_timeout_s: float, read_timeout_s: float
) -> httpx.AsyncClient:
    """Build inside the event loop that will use it."""
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=None)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    if kind == "aiohttp":
        import aiohttp
        from httpx_aiohttp import AiohttpTransport

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_connections, limit_per_host=0, ttl_dns_cache=60
            ),
            auto_decompress=False,
        )
        transport: httpx.AsyncBaseTransport = AiohttpTransport(client=session)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )


def failure_kind(exc: httpx.HTTPError, *, sent: bool) -> tuple[str, bool]:
    """(error name, maybe_delivered) for an exception raised while sending or reading.

    Only a failure to connect proves the request never left; anything after the connection
    was made (a drop, a read timeout) may have reached the upstream.
    """
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        return _aiohttp_kind(cause, sent)
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout", False
    if isinstance(exc, httpx.ConnectError):
        return "connect_error", False
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", True
    return "network_error", True


def _aiohttp_kind(cause: BaseException, sent: bool) -> tuple[str, bool]:
    import aiohttp

    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return "connect_timeout", False
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect_error", False
    if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout", True
    return "network_error", True
