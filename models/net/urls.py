"""URL helpers shared by validation (API) and sending (worker)."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

# One DNS label: what a template value may put into a hostname.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def normalize_origin(value: str) -> str:
    """`https://Slack.com/` -> `https://slack.com`; raises ValueError for a non-origin."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) origin such as https://slack.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} has a path or query; give only scheme://host[:port]")
    return _origin(parts.scheme, parts.hostname, parts.port)


def _origin(scheme: str, host: str | None, port: int | None) -> str:
    """`scheme://host[:port]`, lower-case, without the scheme's default port."""
    shown = f":{port}" if port and port != _DEFAULT_PORT.get(scheme) else ""
    return f"{scheme}://{(host or '').lower()}{shown}"


_DEFAULT_PORT = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """The origin of `url`, written as `normalize_origin` writes one: `https://a.com:443/x`
    and `https://user@A.com/x` are both `https://a.com`."""
    parts = urlsplit(url)
    return _origin(parts.scheme, parts.hostname, parts.port)


def after_origin(url: str) -> str:
    """What follows the origin: path, query and fragment (user info and port dropped)."""
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, parts.fragment))


def is_dns_label(value: str) -> bool:
    """True when `value` is safe inside a hostname: one label, no dots, slashes or `@`."""
    return bool(_LABEL.fullmatch(value))


def is_host_text(value: str) -> bool:
    """True when `value` is lower-case DNS labels joined by dots (`www.zohoapis.eu`, `com.au`):
    text the catalog itself may put into a hostname."""
    return len(value) <= 253 and value == value.lower() and all(map(is_dns_label, value.split(".")))


def host_matches(host: str, pattern: str) -> bool:
    """Exact host match, or `*.example.com` matching any single-level subdomain."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]
        head = host[: -len(suffix)] if host.endswith(suffix) else ""
        return bool(head) and is_dns_label(head)
    return host == pattern


# The longest URL a call may name, and the longest webhook or callback URL.
MAX_URL_CHARS = 8 * 1024
MAX_CALLBACK_URL_CHARS = 2 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
_ASCII_HOST = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_.])?$")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def parse_http_url(url: str, *, max_chars: int = MAX_URL_CHARS) -> httpx.URL:
    """`url` parsed exactly as the worker will send it: http(s), a host (IDNA names in their
    ASCII form), a port from 1 to 65535, no user info. Raises ValueError saying what is wrong.

    The API checks callback URLs with it and the worker delivers to what it returns, so a URL
    the API accepted is a URL the worker can connect to."""
    if len(url) > max_chars:
        raise ValueError(f"must be at most {max_chars} characters")
    if _CONTROL_OR_SPACE.search(url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parsed.userinfo:
        raise ValueError("must not carry user info (user@host)")
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        raise ValueError("must name a host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"host {host!r} is not a valid IPv6 address") from None
    elif not _ASCII_HOST.fullmatch(host):
        raise ValueError(f"host {host!r} is not a valid host name")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError("the port must be from 1 to 65535")
    return parsed


def effective_port(url: httpx.URL) -> int:
    return url.port or DEFAULT_PORTS[url.scheme]


@lru_cache(maxsize=4096)
def allowed_ports(base_url: str) -> frozenset[int]:
    """The ports an app's calls may use: 443, 80 when its base URL is http, and the base
    URL's own port when it names one."""
    base = httpx.URL(base_url)
    ports = {443, effective_port(base)}
    if base.scheme == "http":
        ports.add(80)
    return frozenset(ports)


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out) if out != [""] else "/"


def normalize_url(url: str) -> str:
    """`url` with its path normalized as RFC 3986 section 6 allows: escapes of unreserved
    characters decoded (`%63` is `c`), other escapes in upper case, dot-segments removed.
    The API stores this form, the worker sends it, and rate-limit path rules match it, so a
    rule cannot be dodged by spelling the same path another way."""
    parts = urlsplit(url)
    path = _remove_dot_segments(_ESCAPE.sub(_decode_unreserved, parts.path or "/"))
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def limit_path(url: str) -> str:
    """The path rate-limit rules match: the normalized path, every escape decoded."""
    return unquote(urlsplit(normalize_url(url)).path)
