"""The URLs a call names: where it is sent (`url`, resolved against the app's base URL and
hosts) and where its result goes (`callback_url`, and the tenant's webhook URL). Pure
functions, no I/O."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from models.errors import invalid
from models.net.egress import DestinationForbidden, EgressPolicy
from models.net.urls import (
    MAX_CALLBACK_URL_CHARS,
    MAX_URL_CHARS,
    allowed_ports,
    effective_port,
    host_matches,
    normalize_url,
    parse_http_url,
)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def join_path(base_url: str, path: str) -> str:
    """`path` joined to the app's base URL as httpx joins a path to its `base_url`, except
    that a path already beginning with the base URL's own path is not doubled: for
    `https://slack.com/api`, `conversations.list`, `/conversations.list` and
    `/api/conversations.list` all mean `https://slack.com/api/conversations.list`."""
    base = base_url.rstrip("/")
    base_path = urlsplit(base).path
    end = len(path)
    for mark in "?#":
        if mark in path:
            end = min(end, path.index(mark))
    own = path[:end]
    if base_path and (own == base_path or own.startswith(base_path + "/")):
        return base[: len(base) - len(base_path)] + path
    return f"{base}/{path.lstrip('/')}"


def _starts_with_a_host(raw: str, hosts: list[str]) -> bool:
    first = re.split(r"[/?#]", raw, maxsplit=1)[0]
    host = first.rsplit(":", 1)[0] if ":" in first else first
    return "." in host and any(host_matches(host, pattern) for pattern in hosts)


def resolve_url(raw: str, base_url: str, hosts: list[str]) -> str:
    """The absolute URL a call's `url` names, in the form it is stored and sent
    (`normalize_url`); raises ValueError saying what is wrong. Absolute URLs must be on the
    app's hosts; anything else is a path on its base URL."""
    raw = raw.strip()
    if not raw:
        raise ValueError("is required")
    if len(raw) > MAX_URL_CHARS:
        raise ValueError(f"must be at most {MAX_URL_CHARS} characters")
    if _CONTROL.search(raw):
        raise ValueError("must not contain spaces or control characters")
    base_scheme = urlsplit(base_url).scheme
    if _SCHEME.match(raw):
        url = raw
    elif raw.startswith("//"):
        raise ValueError("give an absolute URL or a path, not //host")
    elif _starts_with_a_host(raw, hosts):
        raise ValueError(
            f"starts with a host but has no scheme: write {base_scheme}://{raw}, "
            "or a path relative to the app's base URL"
        )
    else:
        # A path on the base URL: scheme, host and port are the base URL's own (checked when
        # the catalog was loaded); only the path and query are the caller's.
        return normalize_url(join_path(base_url, raw))
    parsed = parse_http_url(url)
    if parsed.scheme == "http" and base_scheme == "https":
        raise ValueError("must use https, like the app's base URL")
    host = parsed.raw_host.decode("ascii")
    if not any(host_matches(host, pattern) for pattern in hosts):
        raise ValueError(f"host {host!r} is not one of this app's hosts: {', '.join(hosts)}")
    port = effective_port(parsed)
    ports = allowed_ports(base_url)
    if port not in ports:
        raise ValueError(
            f"port {port} is not open to this app; use {' or '.join(map(str, sorted(ports)))}"
        )
    return normalize_url(str(parsed))


def check_callback_url(
    url: str | None, *, field: str = "callback_url", allow_private: bool
) -> str | None:
    """`url` if the worker may deliver to it as far as can be told now (it parses as the
    worker parses it, and is no literal private address or `localhost` unless
    `allow_private`), else a 400 naming `field`."""
    if url is None:
        return None
    try:
        parsed = parse_http_url(url, max_chars=MAX_CALLBACK_URL_CHARS)
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
    # An address literal (or `localhost`) is refused now; a name is checked by the worker
    # when it connects, against what it resolves to then.
    policy = EgressPolicy(allow_private, setting="PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS")
    try:
        policy.check_host(parsed.raw_host.decode("ascii"))
    except DestinationForbidden as exc:
        raise invalid(field, str(exc)) from None
    return url
