"""Checks a call must pass before anything is written (pure functions, no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from api.schemas import METHODS, PassthroughParams
from models.catalog import App
from models.errors import ApiError, ErrorDetail, invalid
from models.settings import DEFAULT_MAX_TIMEOUT_S
from models.urls import host_matches

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
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


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
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S,
) -> CheckedParams:
    """Normalize method, URL and headers, or raise ApiError listing every problem found."""
    problems: list[ErrorDetail] = []
    method = params.method.upper()
    if method not in METHODS:
        problems.append(ErrorDetail("method", f"must be one of {', '.join(METHODS)}"))
    url = _check_url(params.url, base_url, allowed_hosts, problems)
    headers = _check_headers(params.headers, app, problems)
    _check_timeouts(params, max_timeout_s, problems)
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


def _check_url(raw: str, base_url: str, hosts: list[str], problems: list[ErrorDetail]) -> str:
    raw = raw.strip()
    if not raw:
        problems.append(ErrorDetail("url", "is required"))
        return raw
    if _CONTROL.search(raw):
        problems.append(ErrorDetail("url", "must not contain spaces or control characters"))
        return raw
    if not _SCHEME.match(raw):
        if raw.startswith("//"):
            problems.append(ErrorDetail("url", "give an absolute URL or a path, not //host"))
            return raw
        url = f"{base_url}/{raw.lstrip('/')}"
    else:
        url = raw
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        problems.append(ErrorDetail("url", "is not a valid URL"))
        return url
    base_scheme = urlsplit(base_url).scheme
    if parts.scheme not in ("http", "https"):
        problems.append(ErrorDetail("url", "must use http or https"))
    elif parts.scheme == "http" and base_scheme == "https":
        problems.append(ErrorDetail("url", "must use https, like the app's base URL"))
    if parts.username is not None or parts.password is not None:
        problems.append(ErrorDetail("url", "must not carry user info (user@host)"))
    host = parts.hostname or ""
    if not any(host_matches(host, pattern) for pattern in hosts):
        problems.append(
            ErrorDetail("url", f"host {host!r} is not one of this app's hosts: {', '.join(hosts)}")
        )
    return url.split("#", 1)[0]


def _check_headers(
    headers: dict[str, str] | None, app: App, problems: list[ErrorDetail]
) -> dict[str, str] | None:
    if not headers:
        return None
    secret = app.auth.secret_headers
    for name, value in headers.items():
        key = name.lower()
        if not _TOKEN.fullmatch(name):
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
        elif "\r" in value or "\n" in value:
            problems.append(ErrorDetail(f"headers.{name}", "must not contain line breaks"))
    return dict(headers)


def check_callback_url(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("callback_url", "must be an absolute http(s) URL")
    return url


def parse_prefer_wait(prefer: str | None, max_wait_s: float) -> float | None:
    """`Prefer: wait=N` (RFC 7240) -> seconds, capped; None when absent."""
    if not prefer:
        return None
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                raise invalid("Prefer", "wait must be a number of seconds, e.g. wait=10") from None
            if seconds < 0:
                raise invalid("Prefer", "wait must not be negative")
            return min(seconds, max_wait_s)
    return None
