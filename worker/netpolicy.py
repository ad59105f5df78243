"""Where onward requests may go: operator overrides and the private-network rule."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from models.urls import origin_of


def apply_override(url: str, overrides: dict[str, str]) -> tuple[str, bool]:
    """Send `url` to the operator's replacement origin, if one is set for its origin."""
    origin = origin_of(url)
    target = overrides.get(origin)
    if target is None:
        return url, False
    return target + url[len(origin) :], True


def undo_override(url: str, overrides: dict[str, str]) -> str:
    """Map a URL on an override target (e.g. a redirect) back to the public origin."""
    origin = origin_of(url)
    for public, target in overrides.items():
        if origin == target:
            return public + url[len(origin) :]
    return url


def _private(address: str) -> bool:
    a = ipaddress.ip_address(address.split("%", 1)[0])
    return a.is_private or a.is_loopback or a.is_link_local or a.is_reserved or a.is_multicast


def _literal(host: str) -> tuple[str, bool | None]:
    """The host without IPv6 brackets, and whether it is a private address if it is one."""
    literal = host.strip("[]")
    try:
        return literal, _private(literal)
    except ValueError:
        return literal, None


async def resolves_private(host: str) -> bool:
    """True if `host` is, or resolves to, a loopback, private, link-local or reserved address."""
    literal, private = _literal(host)
    if private is not None:
        return private
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            literal, None, proto=socket.IPPROTO_TCP
        )
    except OSError:
        return False  # unresolvable: the request itself fails with a clear error
    return any(_private(str(info[4][0])) for info in infos)


def resolves_private_sync(host: str) -> bool:
    """`resolves_private` for threads without an event loop (webhook deliveries)."""
    literal, private = _literal(host)
    if private is not None:
        return private
    try:
        infos = socket.getaddrinfo(literal, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return any(_private(str(info[4][0])) for info in infos)
