"""Checks a call must pass before anything is written (pure functions, no I/O)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from api.schemas.calls import METHODS, PassthroughParams
from models.catalog.apps import App
from models.errors import ApiError, ErrorDetail, invalid
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
from models.settings import (
    DEFAULT_MAX_CALL_BODY_BYTES,
    DEFAULT_MAX_TIMEOUT_S,
    MAX_WAIT_S,
    Settings,
)

FUNCTION_SUFFIX = "-passthrough-request"
# Headers the transport owns; a caller setting them would corrupt the request.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-authorization",
        "cookie",
    }
)
# Headers one call may send, and the longest name or value of one.
MAX_HEADERS = 50
MAX_HEADER_CHARS = 8 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# What a header value may not hold: control characters other than tab.
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class CallLimits:
    """The operator's bounds on one call (from Settings)."""

    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    max_call_body_bytes: int = DEFAULT_MAX_CALL_BODY_BYTES
    allow_private_callbacks: bool = False

    @classmethod
    def of(cls, settings: Settings) -> CallLimits:
        return cls(
            max_timeout_s=settings.max_timeout_s,
            max_call_body_bytes=settings.max_call_body_bytes,
            allow_private_callbacks=settings.webhook_allow_private_networks,
        )


DEFAULT_CALL_LIMITS = CallLimits()


@dataclass(frozen=True)
class CheckedParams:
    method: str
    url: str
    headers: dict[str, str] | None
    options: dict[str, Any] | None  # the call's own retry and timeout params


def app_slug_of(function: str) -> str | None:
    if function.endswith(FUNCTION_SUFFIX) and len(function) > len(FUNCTION_SUFFIX):
        return function[: -len(FUNCTION_SUFFIX)]
    return None


def check_params(
    params: PassthroughParams,
    app: App,
    base_url: str,
    allowed_hosts: list[str],
    limits: CallLimits = DEFAULT_CALL_LIMITS,
) -> CheckedParams:
    """Normalize method, URL and headers, or raise ApiError listing every problem found."""
    problems: list[ErrorDetail] = []
    method = params.method.upper()
    if method not in METHODS:
        problems.append(ErrorDetail("method", f"must be one of {', '.join(METHODS)}"))
    url = ""
    try:
        url = resolve_url(params.url, base_url, allowed_hosts)
    except ValueError as exc:
        problems.append(ErrorDetail("url", str(exc)))
    headers = _check_headers(params.headers, app, problems)
    _check_body(params.body, limits.max_call_body_bytes, problems)
    _check_timeouts(params, limits.max_timeout_s, problems)
    if problems:
        raise ApiError("invalid_params", problems)
    return CheckedParams(method, url, headers, params.options())


def _check_timeouts(
    params: PassthroughParams, max_timeout_s: float, problems: list[ErrorDetail]
) -> None:
    if params.timeout is None:
        return
    for name, value in params.timeout.model_dump(exclude_none=True).items():
        if value > max_timeout_s:
            problems.append(
                ErrorDetail(
                    f"timeout.{name}",
                    f"must be at most {max_timeout_s:g} s (the operator's PASSTHRU_MAX_TIMEOUT_S)",
                )
            )


def _check_body(body: Any, max_bytes: int, problems: list[ErrorDetail]) -> None:
    if body is None:
        return
    size = len(orjson.dumps(body))
    if size > max_bytes:
        problems.append(
            ErrorDetail(
                "body",
                f"is {size} bytes as JSON; at most {max_bytes} "
                "(the operator's PASSTHRU_MAX_CALL_BODY_BYTES)",
            )
        )


# --- the call's URL ---------------------------------------------------------------------------


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


# --- headers ----------------------------------------------------------------------------------


def _check_headers(
    headers: dict[str, str] | None, app: App, problems: list[ErrorDetail]
) -> dict[str, str] | None:
    if not headers:
        return None
    if len(headers) > MAX_HEADERS:
        problems.append(ErrorDetail("headers", f"at most {MAX_HEADERS} headers per call"))
        return None
    secret = app.auth.secret_headers
    for name, value in headers.items():
        key = name.lower()
        if len(name) > MAX_HEADER_CHARS:
            problems.append(
                ErrorDetail(
                    "headers", f"a header name is longer than {MAX_HEADER_CHARS} characters"
                )
            )
        elif not _TOKEN.fullmatch(name):
            problems.append(ErrorDetail(f"headers.{name}", "is not a valid header name"))
        elif key in secret:
            problems.append(
                ErrorDetail(
                    f"headers.{name}",
                    "carries the credentials, which passthru injects; remove it",
                )
            )
        elif key in _RESERVED_HEADERS:
            problems.append(ErrorDetail(f"headers.{name}", "is set by passthru; remove it"))
        elif len(value) > MAX_HEADER_CHARS:
            problems.append(
                ErrorDetail(f"headers.{name}", f"must be at most {MAX_HEADER_CHARS} characters")
            )
        elif "\r" in value or "\n" in value:
            problems.append(ErrorDetail(f"headers.{name}", "must not contain line breaks"))
        elif _HEADER_CONTROL.search(value):
            problems.append(ErrorDetail(f"headers.{name}", "must not contain control characters"))
    return dict(headers)


# --- callback URLs ----------------------------------------------------------------------------


def check_callback_url(
    url: str | None, *, field: str = "callback_url", allow_private: bool = False
) -> str | None:
    """A webhook or callback URL the worker can deliver to, or a 400 naming `field`."""
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


# --- Prefer and wait --------------------------------------------------------------------------


@dataclass(frozen=True)
class Preference:
    """What `Prefer` asked for: `wait` seconds to honour (None: no wait asked), and
    whether `respond-async` was named."""

    wait_s: float | None = None
    respond_async: bool = False

    @property
    def applied(self) -> str | None:
        """The `Preference-Applied` header."""
        parts = []
        if self.respond_async:
            parts.append("respond-async")
        if self.wait_s is not None:
            parts.append(f"wait={self.wait_s:g}")
        return ", ".join(parts) or None


def parse_wait(text: str, field: str, max_wait_s: float) -> float:
    """A wait asked for (finite, 0 to MAX_WAIT_S) -> the seconds honoured (at most
    `max_wait_s`, the operator's PASSTHRU_MAX_WAIT_S)."""
    try:
        seconds = float(text.strip().strip('"'))
    except ValueError:
        raise invalid(field, "wait must be a number of seconds, e.g. wait=10") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT_S:
        raise invalid(field, f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}")
    return min(seconds, max_wait_s)


def parse_prefer(prefer: str | None, max_wait_s: float) -> Preference:
    """`Prefer` (RFC 7240): `wait=N` and `respond-async`; other preferences are ignored."""
    if not prefer:
        return Preference()
    wait_s: float | None = None
    respond_async = False
    for part in prefer.split(","):
        name, _, value = part.split(";", 1)[0].strip().partition("=")
        name = name.strip().lower()
        if name == "wait" and wait_s is None:
            wait_s = parse_wait(value, "Prefer", max_wait_s)
        elif name == "respond-async":
            respond_async = True
    return Preference(wait_s, respond_async)
