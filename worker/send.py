"""Send one onward request: overrides, private-network rule, redirects within the app's
hosts, and a cap on the body read. Returns an Answer or a Failure; never raises for the
network."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from models.urls import host_matches
from worker.netpolicy import apply_override, is_private_host, undo_override
from worker.onward import OnwardRequest

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class Answer:
    """The upstream answered with an HTTP status."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    truncated: bool
    duration_ms: int


@dataclass(frozen=True)
class Failure:
    """No HTTP answer. `maybe_delivered` is True when the upstream may have got the request."""

    error: str  # connect_error | timeout | network_error | destination_forbidden | ...
    message: str
    maybe_delivered: bool
    duration_ms: int


Outcome = Answer | Failure


@dataclass(frozen=True)
class SendPolicy:
    overrides: dict[str, str]
    allow_private_networks: bool
    max_response_bytes: int


def _redirect_target(
    url: str, sent_to: str, location: str | None, overrides: dict[str, str]
) -> str | None:
    """The public URL a Location points to, or None if there is none or it is malformed."""
    if not location:
        return None
    try:
        return urljoin(url, undo_override(urljoin(sent_to, location), overrides))
    except ValueError:
        return None


def _may_follow(current: str, location: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Follow only within the app's hosts, and never from https down to http."""
    try:
        here, there = urlsplit(current), urlsplit(location)
        there.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    if here.scheme == "https" and there.scheme != "https":
        return False
    host = there.hostname or ""
    return any(host_matches(host, pattern) for pattern in allowed_hosts)


def send(client: httpx.Client, req: OnwardRequest, policy: SendPolicy) -> Outcome:
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    method, url, content, headers = req.method, req.url, req.content, req.headers
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target, overridden = apply_override(url, policy.overrides)
            host = urlsplit(target).hostname or ""
        except ValueError as exc:
            return Failure("invalid_url", str(exc), False, elapsed_ms())
        if not overridden and not policy.allow_private_networks and is_private_host(host):
            return Failure(
                "destination_forbidden",
                f"{host} is a private or loopback address; set "
                "PASSTHRU_ALLOW_PRIVATE_NETWORKS=true to allow it",
                maybe_delivered=False,
                duration_ms=elapsed_ms(),
            )
        try:
            request = client.build_request(method, target, headers=headers, content=content)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            return Failure("invalid_url", str(exc), False, elapsed_ms())
        try:
            response = client.send(request, auth=req.auth, stream=True)
        except httpx.ConnectTimeout as exc:
            return Failure("connect_timeout", str(exc) or "connect timed out", False, elapsed_ms())
        except httpx.ConnectError as exc:
            return Failure("connect_error", str(exc) or "connection refused", False, elapsed_ms())
        except httpx.TimeoutException as exc:
            return Failure("timeout", str(exc) or "timed out", True, elapsed_ms())
        except httpx.HTTPError as exc:
            return Failure("network_error", str(exc) or type(exc).__name__, True, elapsed_ms())
        try:
            location = response.headers.get("location")
            next_url = _redirect_target(url, target, location, policy.overrides)
            if (
                response.status_code in _REDIRECTS
                and next_url
                and _may_follow(url, next_url, req.allowed_hosts)
            ):
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method, content = "GET", None
                    headers = {
                        k: v
                        for k, v in headers.items()
                        if k.lower() not in ("content-type", "content-encoding")
                    }
                url = next_url
                continue
            body, truncated = _read_capped(response, policy.max_response_bytes)
        except httpx.TimeoutException as exc:
            return Failure("timeout", str(exc) or "read timed out", True, elapsed_ms())
        except httpx.HTTPError as exc:
            return Failure("network_error", str(exc) or type(exc).__name__, True, elapsed_ms())
        finally:
            response.close()
        return Answer(
            response.status_code, list(response.headers.items()), body, truncated, elapsed_ms()
        )
    return Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects", True, elapsed_ms())


def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False
