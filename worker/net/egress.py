"""The egress policy (models/net/egress.py) applied where the worker connects: onward calls,
token refreshes and webhooks.

The name is resolved once, by the connection itself: the aiohttp resolver and the httpcore
network backends below resolve, check every answer and connect to an address they checked,
while SNI and `Host` stay the name. So an answer that changes between a check and the
connection (DNS rebinding) cannot move it, and the host checked is exactly the host
connected (IDNA names arrive in their ASCII form). A name that does not resolve is a
failure to connect: the policy fails closed.

Hosts that look like addresses are checked before any connection (`check_host`): aiohttp
takes anything made of digits and dots for an address and never asks a resolver, so such a
host must be a canonical address the policy allows (`127.1` and `2130706433` are refused).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import httpcore

from models.net.egress import DestinationForbidden, EgressPolicy, trusted_hosts
from models.net.sync_client import CheckingSyncBackend, SyncLookup, target_address

AsyncLookup = Callable[[str, int], Awaitable[list[Any]]]

__all__ = [
    "LOOKUP_OWNER",
    "AsyncLookup",
    "CheckingBackend",
    "CheckingSyncBackend",
    "DestinationForbidden",
    "EgressPolicy",
    "SyncLookup",
    "make_resolver",
    "owned_lookups",
    "target_address",
    "threaded_lookup",
    "trusted_hosts",
]


def _socket_lookup_of(host: str, port: int) -> list[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def threaded_lookup(executor: ThreadPoolExecutor) -> AsyncLookup:
    """Name lookups on threads of `executor`. A lookup cannot be cancelled once it runs: a
    name whose DNS answers slowly (a tenant's own domain, for webhooks) holds a thread
    until the resolver gives up. Each kind of traffic gets its own pool, so one cannot
    starve another's lookups."""

    async def lookup(host: str, port: int) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(
            executor, _socket_lookup_of, host, port
        )

    return lookup


# Whose lookups the running task makes (a webhook attempt's tenant); None: nobody's.
LOOKUP_OWNER: ContextVar[str | None] = ContextVar("passthru_lookup_owner", default=None)


def owned_lookups(lookup: AsyncLookup, per_owner: int) -> AsyncLookup:
    """`lookup`, with at most `per_owner` lookups of one owner (LOOKUP_OWNER) in flight:
    names a tenant makes resolve slowly (its DNS never answers) wait for that tenant's own
    lookups, and leave the other threads of the pool to the other tenants. Used from one
    event loop."""
    slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # owner -> (slots, users)

    async def owned(host: str, port: int) -> list[Any]:
        owner = LOOKUP_OWNER.get()
        if owner is None:
            return await lookup(host, port)
        sem, users = slots.setdefault(owner, (asyncio.Semaphore(per_owner), [0]))
        users[0] += 1
        try:
            async with sem:
                return await lookup(host, port)
        finally:
            users[0] -= 1
            if not users[0]:
                del slots[owner]

    return owned


async def _loop_lookup(host: str, port: int) -> list[Any]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


def make_resolver(policy: EgressPolicy, lookup: AsyncLookup | None = None) -> Any:
    """An aiohttp resolver that checks every answer against `policy` (built here so that
    importing this module does not import aiohttp)."""
    from aiohttp.abc import AbstractResolver, ResolveResult

    resolve_name = lookup or _loop_lookup

    class CheckingResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            found = policy.checked(host, await resolve_name(host, port))
            return [
                ResolveResult(
                    hostname=host,
                    host=f"{address}%{scope}" if scope else address,
                    port=port,
                    family=fam,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
                for fam, address, scope in found
            ]

        async def close(self) -> None:
            return None

    return CheckingResolver()


class CheckingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front: resolve, check, connect to a
    checked address; TLS still verifies and sends the name (httpcore passes it to
    start_tls), and `Host` is the URL's."""

    def __init__(
        self,
        policy: EgressPolicy,
        inner: httpcore.AsyncNetworkBackend | None = None,
        lookup: AsyncLookup | None = None,
    ) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()
        self._lookup = lookup or _loop_lookup

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._policy.check_host(host)
        try:
            async with asyncio.timeout(timeout):
                infos = await self._lookup(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        last: Exception | None = None
        for _, address, scope in self._policy.checked(host, infos):
            try:
                return await self._inner.connect_tcp(
                    target_address(address, scope), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationForbidden("unix sockets are not a destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
