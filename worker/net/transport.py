"""The HTTP clients of a worker process, and what their errors mean.

Onward calls and webhooks use one of two transports, chosen by PASSTHRU_HTTP_TRANSPORT:
`aiohttp` (httpx's API over aiohttp's connection pool, the default: it keeps its speed with
hundreds of requests in flight, where httpx's own pool costs more CPU per request the more
connections it holds: docs/performance.md) or `httpx` (httpx's own pool). Token refreshes
use httpx's own (a synchronous client). Every client:
- connects only where the egress policy allows (worker/net/egress.py), resolving each name once;
- keeps no cookies, so nothing an upstream sets for one end user rides along with another's
  request;
- ignores proxy variables and follows no redirect by itself.

`describe_failure` turns any exception of either transport into (error, maybe_delivered,
message): only a failure to connect proves the request never left, which decides whether
a POST may be sent again. The message is built from the exception's own text, never its
repr (aiohttp's carries the request's headers); the caller scrubs it before storing it.
"""

from __future__ import annotations

import re
from typing import Literal

import httpcore
import httpx

from models.net.decompress import ACCEPT_ENCODING
from models.net.sync_client import NoCookies
from worker.net.egress import (
    AsyncLookup,
    CheckingBackend,
    DestinationForbidden,
    EgressPolicy,
    make_resolver,
)

TransportKind = Literal["aiohttp", "httpx"]


def _checked_pool_transport(
    policy: EgressPolicy, limits: httpx.Limits, lookup: AsyncLookup | None
) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx builds its httpcore pool here and takes no network backend: the same pool, on
    # the checking backend (tests/worker/test_egress.py sends through it to prove it).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=CheckingBackend(policy, lookup=lookup),
    )
    return transport


def make_async_client(
    kind: TransportKind,
    *,
    policy: EgressPolicy,
    max_connections: int,
    connect_timeout_s: float,
    read_timeout_s: float,
    lookup: AsyncLookup | None = None,
) -> httpx.AsyncClient:
    """The onward client; build it inside the event loop that will use it."""
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=None)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    transport: httpx.AsyncBaseTransport
    if kind == "aiohttp":
        transport = _aiohttp_transport(policy, max_connections, lookup)
    else:
        transport = _checked_pool_transport(policy, limits, lookup)
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        cookies=NoCookies(),
        headers={"Accept-Encoding": ACCEPT_ENCODING},
    )


def _aiohttp_transport(
    policy: EgressPolicy, max_connections: int, lookup: AsyncLookup | None
) -> httpx.AsyncBaseTransport:
    """httpx's API over aiohttp's pool, whose resolver checks every name it resolves. An
    address written in the URL is never resolved: the caller checks it (`check_host`)."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            ttl_dns_cache=60,
            resolver=make_resolver(policy, lookup),
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )
    return AiohttpTransport(client=session)


class _HostChecked(httpx.AsyncBaseTransport):
    """Refuses a URL whose host the policy refuses as written (an address, `localhost`)
    before anything connects; names are checked when they are resolved."""

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: EgressPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_host(request.url.raw_host.decode("ascii"))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def make_webhook_client(
    policy: EgressPolicy,
    *,
    max_connections: int,
    timeout_s: float,
    lookup: AsyncLookup | None = None,
    kind: TransportKind = "aiohttp",
) -> httpx.AsyncClient:
    """The client of webhook deliveries; each attempt also runs under a total deadline of
    `timeout_s` (a per-read timeout alone lets a receiver drip one byte at a time)."""
    transport: httpx.AsyncBaseTransport
    if kind == "aiohttp":
        transport = _HostChecked(_aiohttp_transport(policy, max_connections, lookup), policy)
    else:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=16)
        transport = _checked_pool_transport(policy, limits, lookup)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        cookies=NoCookies(),
    )


def transport_of(client: httpx.AsyncClient) -> httpx.AsyncBaseTransport:
    """The transport under an onward client. Onward requests are built as `httpx.Request`s
    and handed to it directly: `AsyncClient.send`'s layers (its auth flow, redirects, cookie
    jar, event hooks, log line) do nothing passthru needs, since credentials, redirects and
    cookies are handled per call, and they cost about a third of a request's CPU (measured
    in docs/performance.md)."""
    return client._transport


Described = tuple[str, bool, str]


def describe_failure(exc: BaseException, *, sent: bool) -> Described:
    """(error, maybe_delivered, message) for an exception raised while sending or reading.

    Only a failure to connect proves the request never left; anything after the connection
    was made (a drop, a read timeout, an answer that cannot be parsed) may have reached the
    upstream.
    """
    if isinstance(exc, DestinationForbidden):
        return "destination_forbidden", False, str(exc)
    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) else exc
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        return _aiohttp(cause)
    name = type(exc).__name__
    text = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, httpx.LocalProtocolError) or (not sent and type(exc) is ValueError):
        # The request could not be written (a header value the protocol refuses): it never
        # left. Its text quotes the request's own headers, so only the class is kept.
        return "invalid_request", False, f"{name}: the request could not be written"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout", False, text
    if isinstance(exc, httpx.ConnectError):
        return "connect_error", False, text
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", True, text
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid_url", False, text
    if isinstance(exc, httpx.ProtocolError):
        return "network_error", True, f"{name}: {parse_reason(str(exc))}"
    if isinstance(exc, httpx.HTTPError | OSError):
        return "network_error", True, text
    return "internal_error", True, f"{name} while {'reading' if sent else 'sending'}"


# Where a parser's message starts quoting what it read: a quote opening a word or a repr'd
# buffer (an apostrophe inside a word is prose), or a new line.
_QUOTING = re.compile(r"(?:^|(?<=[\s(:=]))(?:bytearray\()?b?['\"]|\n")


def parse_reason(message: str) -> str:
    """Why an answer could not be parsed, without the bytes the parser quotes after it.
    aiohttp quotes its buffer from where the last read began, which may be the tail of an
    echoed credential, a piece no scrubber can recognise as the secret."""
    reason = _QUOTING.split(message, maxsplit=1)[0].rstrip(" :=(")
    return reason or "the answer could not be parsed"


def failure_kind(exc: BaseException, *, sent: bool) -> tuple[str, bool]:
    kind, delivered, _ = describe_failure(exc, sent=sent)
    return kind, delivered


def _aiohttp(cause: BaseException) -> Described:
    """aiohttp's exceptions by what they prove. Messages come from their own fields, never
    from `repr()`, which for ClientResponseError quotes the request's headers."""
    import aiohttp

    name = type(cause).__name__
    if isinstance(cause, aiohttp.ClientResponseError):
        # The upstream answered something aiohttp cannot parse (a header over its limit,
        # a broken status line): the request arrived.
        return "invalid_response", True, f"{name}: {parse_reason(str(cause.message))}"
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return "connect_timeout", False, name
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect_error", False, f"{name}: {cause.os_error.strerror or cause.os_error}"
    if isinstance(cause, aiohttp.ServerFingerprintMismatch):
        return "connect_error", False, name
    if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout", True, name
    if isinstance(cause, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return "invalid_url", False, name
    if isinstance(cause, aiohttp.ClientPayloadError):
        return "network_error", True, f"{name}: the body was cut off"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "network_error", True, f"{name}: the upstream closed the connection"
    if isinstance(cause, aiohttp.ClientOSError):
        return "network_error", True, f"{name}: {cause.strerror or 'connection error'}"
    return "network_error", True, name
