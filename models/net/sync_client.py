"""A synchronous HTTP client under the egress policy (models/net/egress.py), for token
endpoints: the worker's refreshes and the API's code exchanges. The name is resolved once,
by the connection itself, every answer checked, and the connection made to an address that
was checked (so DNS rebinding cannot move it); no cookies, no proxy variables, no redirects.
Under `deadline`, an exchange ends in time however slowly the other side answers.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpcore
import httpx

from models.net.egress import DestinationForbidden, EgressPolicy

SyncLookup = Callable[[str, int], list[Any]]


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def socket_lookup(host: str, port: int) -> list[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def target_address(address: str, scope: int) -> str:
    return f"{address}%{scope}" if scope else address


# When (time.monotonic()) the exchange under way in this context must be over: every
# connect, read and write of a client made here waits at most until then.
_DEADLINE: ContextVar[float | None] = ContextVar("passthru_exchange_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Exchanges made inside end within `seconds` in all, however the other side drips its
    status line, headers or body: each socket wait is cut to what is left."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _within(timeout: float | None, late: type[Exception]) -> float | None:
    """`timeout`, cut to what the exchange's deadline leaves; `late` once nothing is left."""
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise late("the exchange's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by the deadline of the exchange using it."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _within(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _within(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        within = _within(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, within))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class CheckingSyncBackend(httpcore.NetworkBackend):
    """httpcore's network backend with the policy in front: resolve, check, connect to a
    checked address; TLS still verifies and sends the name."""

    def __init__(
        self,
        policy: EgressPolicy,
        inner: httpcore.NetworkBackend | None = None,
        lookup: SyncLookup | None = None,
    ) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()
        self._lookup = lookup or socket_lookup

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self._policy.check_host(host)
        try:
            infos = self._lookup(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        last: Exception | None = None
        for _, address, scope in self._policy.checked(host, infos):
            try:
                within = _within(timeout, httpcore.ConnectTimeout)
                stream = self._inner.connect_tcp(
                    target_address(address, scope), port, within, local_address, socket_options
                )
                return _DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise DestinationForbidden("unix sockets are not a destination")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def make_sync_client(
    policy: EgressPolicy, *, timeout: httpx.Timeout, lookup: SyncLookup | None = None
) -> httpx.Client:
    """A synchronous client under `policy` (OAuth token endpoints)."""
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=20,
        network_backend=CheckingSyncBackend(policy, lookup=lookup),
    )
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        cookies=NoCookies(),
    )
