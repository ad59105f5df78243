"""URL helpers shared by validation (API) and sending (worker)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# One DNS label: what a template value may put into a hostname.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def normalize_origin(value: str) -> str:
    """`https://Slack.com/` -> `https://slack.com`; raises ValueError for a non-origin."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) origin such as https://slack.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} has a path or query; give only scheme://host[:port]")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def is_dns_label(value: str) -> bool:
    """True when `value` is safe inside a hostname: one label, no dots, slashes or `@`."""
    return bool(_LABEL.fullmatch(value))


def host_matches(host: str, pattern: str) -> bool:
    """Exact host match, or `*.example.com` matching any single-level subdomain."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]
        head = host[: -len(suffix)] if host.endswith(suffix) else ""
        return bool(head) and is_dns_label(head)
    return host == pattern
