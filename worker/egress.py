"""Where the worker may connect: one policy for onward calls, token refreshes and webhooks.

A destination passes when every address its name resolves to is global: not private,
loopback, link-local, CGNAT (100.64.0.0/10, where cloud metadata services live),
unspecified, multicast, reserved, nor a range that embeds or reaches one (IPv4-mapped,
6to4, NAT64, Teredo). The name is resolved once, by the connection itself: the aiohttp
connector and the httpcore network backend below resolve, check every answer and connect
to an address they checked, while SNI and `Host` stay the name. So an answer that changes
between a check and the connection (DNS rebinding) cannot move it, and the host checked is
exactly the host connected (IDNA names arrive in their ASCII form). A name that does not
resolve is a failure to connect: the policy fails closed.

Hosts that look like addresses are checked before any connection (`check_host`): aiohttp
takes anything made of digits and dots for an address and never asks a resolver, so such a
host must be a canonical address the policy allows (`127.1` and `2130706433` are refused).

`allow_private` lifts the rule (development and tests); `trusted_hosts` exempts the
operator's upstream override targets (PASSTHRU_UPSTREAM_OVERRIDES) for onward calls only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (family, address, scope id) of one resolved address
Resolved = tuple[int, str, int]
AsyncLookup = Callable[[str, int], Awaitable[list[Any]]]
SyncLookup = Callable[[str, int], list[Any]]

_REFUSED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/32",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


class DestinationForbidden(Exception):
    """The destination is, or resolves to, an address the policy refuses. Not an OSError on
    purpose: the HTTP libraries pass it through untouched instead of wrapping it as a
    connection error that would be retried."""


def address_allowed(address: str) -> bool:
    """True for a global unicast address outside every range that reaches a private one."""
    try:
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return False
    return not any(ip.version == net.version and ip in net for net in _REFUSED)


def _looks_like_address(host: str) -> bool:
    """What aiohttp takes for an address without resolving it: digits and dots, or a colon."""
    return ":" in host or host.replace(".", "").isdigit()


@dataclass(frozen=True)
class EgressPolicy:
    allow_private: bool = False
    # The operator's override targets: exempt, since the operator chose them.
    trusted_hosts: frozenset[str] = frozenset()
    # The setting that lifts the rule, named in refusals.
    setting: str = "PASSTHRU_ALLOW_PRIVATE_NETWORKS"

    def exempt(self, host: str) -> bool:
        return self.allow_private or host.lower().strip("[]") in self.trusted_hosts

    def refusal(self, host: str, address: str) -> DestinationForbidden:
        shown = host if host == address else f"{host} resolves to {address}, which"
        return DestinationForbidden(
            f"{shown} is not a public address (private, loopback, link-local or reserved); "
            f"set {self.setting}=true to allow it"
        )

    def check_host(self, host: str) -> None:
        """Refuse a host that is, or looks to a connector like, a refused address."""
        literal = host.strip("[]")
        if not _looks_like_address(literal) or self.exempt(literal):
            return
        try:
            canonical = str(ipaddress.ip_address(literal.split("%", 1)[0]))
        except ValueError:
            raise DestinationForbidden(
                f"{host} is not a canonical IP address; write the address in full"
            ) from None
        if not address_allowed(canonical):
            raise self.refusal(host, canonical)

    def checked(self, host: str, infos: Iterable[Any]) -> list[Resolved]:
        """The addresses of `getaddrinfo` answers, or DestinationForbidden if any is refused
        (a name with one private answer among public ones is a rebinding attempt)."""
        found: list[Resolved] = []
        for family, _, _, _, sockaddr in infos:
            scope = int(sockaddr[3]) if family == socket.AF_INET6 and len(sockaddr) > 3 else 0
            found.append((int(family), str(sockaddr[0]), scope))
        if not found:
            raise DestinationForbidden(f"{host} resolves to no address")
        if not self.exempt(host):
            for _, address, _ in found:
                if not address_allowed(address):
                    raise self.refusal(host, address)
        return found


async def _loop_lookup(host: str, port: int) -> list[Any]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _socket_lookup(host: str, port: int) -> list[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


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


def _target(address: str, scope: int) -> str:
    return f"{address}%{scope}" if scope else address


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
                    _target(address, scope), port, timeout, local_address, socket_options
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


class CheckingSyncBackend(httpcore.NetworkBackend):
    """CheckingBackend for synchronous clients (token refreshes on pipeline threads)."""

    def __init__(
        self,
        policy: EgressPolicy,
        inner: httpcore.NetworkBackend | None = None,
        lookup: SyncLookup | None = None,
    ) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()
        self._lookup = lookup or _socket_lookup

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
                return self._inner.connect_tcp(
                    _target(address, scope), port, timeout, local_address, socket_options
                )
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


def trusted_hosts(override_targets: Sequence[str]) -> frozenset[str]:
    """The hosts of the operator's override target origins."""
    import httpx

    return frozenset(httpx.URL(origin).host.lower() for origin in override_targets)
