"""Send one onward request: overrides, private-network rule, redirects within the app's
hosts, a cap on the body read and a total deadline. Returns an Answer or a Failure; never
raises for the network."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from models.urls import host_matches
from worker.auth import QueryAuth
from worker.netpolicy import apply_override, resolves_private, undo_override
from worker.onward import OnwardRequest
from worker.transport import failure_kind

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

    error: str  # connect_error | connect_timeout | timeout | network_error | ...
    message: str
    maybe_delivered: bool
    duration_ms: int


Outcome = Answer | Failure


@dataclass(frozen=True)
class SendPolicy:
    overrides: dict[str, str]
    allow_private_networks: bool
    max_response_bytes: int


async def send(client: httpx.AsyncClient, req: OnwardRequest, policy: SendPolicy) -> Outcome:
    started = time.monotonic()
    total_s = req.timeouts.total_s
    try:
        async with asyncio.timeout(total_s):
            return await _exchange(client, req, policy, started)
    except TimeoutError:
        return Failure(
            "timeout",
            f"no complete answer within {total_s:g} s",
            maybe_delivered=True,
            duration_ms=_ms(started),
        )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def _exchange(
    client: httpx.AsyncClient, req: OnwardRequest, policy: SendPolicy, started: float
) -> Outcome:
    method, url, content, headers = req.method, req.url, req.content, req.headers
    timeout = httpx.Timeout(req.timeouts.read_s, connect=req.timeouts.connect_s, pool=None)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target, overridden = apply_override(url, policy.overrides)
            host = urlsplit(target).hostname or ""
            request = _with_auth(
                client.build_request(
                    method, target, headers=headers, content=content, timeout=timeout
                ),
                req.auth,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            return Failure("invalid_url", str(exc), False, _ms(started))
        if not overridden and not policy.allow_private_networks and await resolves_private(host):
            return Failure(
                "destination_forbidden",
                f"{host} is a private or loopback address; set "
                "PASSTHRU_ALLOW_PRIVATE_NETWORKS=true to allow it",
                maybe_delivered=False,
                duration_ms=_ms(started),
            )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            kind, delivered = failure_kind(exc, sent=False)
            return Failure(kind, _message(exc, req.auth), delivered, _ms(started))
        try:
            next_url = _redirect_target(
                url, target, response.headers.get("location"), policy.overrides
            )
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
            body, truncated = await _read_capped(response, policy.max_response_bytes)
        except httpx.HTTPError as exc:
            kind, delivered = failure_kind(exc, sent=True)
            return Failure(kind, _message(exc, req.auth), delivered, _ms(started))
        finally:
            await response.aclose()
        return Answer(
            response.status_code, list(response.headers.items()), body, truncated, _ms(started)
        )
    return Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects", True, _ms(started))


def _message(exc: Exception, auth: httpx.Auth) -> str:
    """What went wrong, never with a secret that rides in the URL."""
    text = str(exc) or type(exc).__name__
    return auth.scrub(text) if isinstance(auth, QueryAuth) else text


def _with_auth(request: httpx.Request, auth: httpx.Auth) -> httpx.Request:
    """Apply the credentials: passthru's auth styles need no answer, so the flow's first
    step is the whole of it (cheaper than httpx's per-request auth machinery)."""
    flow = auth.sync_auth_flow(request)
    authed = next(flow)
    flow.close()
    return authed


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


async def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False
