"""Which redirects an onward request follows: within the app's hosts and ports, never from
https down to http, never to a Location with user info, and mapped back from an operator's
override target to the public origin first."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from models.net.overrides import undo_override
from models.net.urls import DEFAULT_PORTS, host_matches


def redirect_target(
    url: str, sent_to: str, location: str | None, overrides: dict[str, str]
) -> str | None:
    """The public URL a Location points to, or None if there is none or it is malformed."""
    if not location:
        return None
    try:
        return urljoin(url, undo_override(urljoin(sent_to, location), overrides))
    except ValueError:
        return None


def may_follow(
    current: str, location: str, allowed_hosts: tuple[str, ...], allowed_ports: frozenset[int]
) -> bool:
    """Follow only within the app's hosts and ports, and never from https down to http."""
    try:
        here, there = urlsplit(current), urlsplit(location)
        port = there.port or DEFAULT_PORTS.get(there.scheme)
    except ValueError:
        return False
    if here.scheme == "https" and there.scheme != "https":
        return False
    if there.username is not None or there.password is not None:
        return False  # user info in a Location: never followed
    host = there.hostname or ""
    return port in allowed_ports and any(host_matches(host, p) for p in allowed_hosts)
