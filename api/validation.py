"""The checks a call's params must pass before anything is written: method, URL, headers,
body size, timeouts (pure functions, no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from api.call_urls import resolve_url
from api.schemas.calls import METHODS, PassthroughParams
from models.catalog.apps import App
from models.errors import ApiError, ErrorDetail
from models.settings import Settings

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
# What a header value may not hold: control characters other than tab.
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class CallLimits:
    """The operator's bounds on one call, from Settings."""

    max_timeout_s: float  # PASSTHRU_MAX_TIMEOUT_S
    max_call_body_bytes: int  # PASSTHRU_MAX_CALL_BODY_BYTES
    allow_private_callbacks: bool  # PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS

    @classmethod
    def of(cls, settings: Settings) -> CallLimits:
        return cls(
            max_timeout_s=settings.max_timeout_s,
            max_call_body_bytes=settings.max_call_body_bytes,
            allow_private_callbacks=settings.webhook_allow_private_networks,
        )


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
    limits: CallLimits,
) -> CheckedParams:
    """Normalize method, URL and headers, and check the body and timeouts against `limits`;
    raise ApiError listing every problem found."""
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
        elif not value.isascii():  # what an HTTP client can send as it is
            problems.append(
                ErrorDetail(f"headers.{name}", "must be ASCII: percent-encode other characters")
            )
    return dict(headers)
