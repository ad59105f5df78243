"""Send one onward request: overrides, the egress policy, redirects within the app's hosts
and ports, a body decoded under a cap and a message's memory budget, and a total deadline.
Returns an Answer or a Failure and never raises for anything the network or the upstream
does; whatever it returns has passed through the request's scrubber."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx

from models.net.decompress import DecodeError, decoder_for
from models.net.overrides import apply_override
from worker.calls.onward import OnwardRequest
from worker.net.egress import DestinationForbidden, EgressPolicy
from worker.net.redirects import may_follow, redirect_target
from worker.net.transport import describe_failure, transport_of

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
# The longest failure message stored (the column is text; this keeps attempts readable).
MESSAGE_CHARS = 500


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
    egress: EgressPolicy
    max_response_bytes: int


class MemoryBudget:
    """Body bytes the requests of one message may still hold. Used from one event loop
    only, so it needs no lock."""

    def __init__(self, total_bytes: int) -> None:
        self.left = total_bytes

    def spend(self, n: int) -> None:
        self.left = max(0, self.left - n)


async def send(
    client: httpx.AsyncClient,
    req: OnwardRequest,
    policy: SendPolicy,
    budget: MemoryBudget | None = None,
) -> Outcome:
    started = time.monotonic()
    total_s = req.timeouts.total_s
    try:
        async with asyncio.timeout(total_s):
            return await _exchange(client, req, policy, budget, started)
    except TimeoutError:
        return Failure(
            "timeout",
            f"no complete answer within {total_s:g} s",
            maybe_delivered=True,
            duration_ms=_ms(started),
        )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failure(
    req: OnwardRequest, error: str, message: str, maybe_delivered: bool, started: float
) -> Failure:
    return Failure(error, req.scrub.stored(message, MESSAGE_CHARS), maybe_delivered, _ms(started))


@dataclass(frozen=True, slots=True)
class _Hop:
    """One request of an exchange: the first, or one a redirect asked for."""

    method: str
    url: str
    content: bytes | None
    headers: dict[str, str]

    def redirected(self, status: int, to: str) -> _Hop:
        """303 (and 301/302 after a POST) turn the request into a GET without a body."""
        if status == 303 or (status in (301, 302) and self.method == "POST"):
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("content-type", "content-encoding")
            }
            return _Hop("GET", to, None, headers)
        return replace(self, url=to)


async def _exchange(
    client: httpx.AsyncClient,
    req: OnwardRequest,
    policy: SendPolicy,
    budget: MemoryBudget | None,
    started: float,
) -> Outcome:
    hop = _Hop(req.method, req.url, req.content, req.headers)
    timeout = httpx.Timeout(req.timeouts.read_s, connect=req.timeouts.connect_s, pool=None)
    extensions = {"timeout": timeout.as_dict()}
    transport = transport_of(client)
    for _ in range(MAX_REDIRECTS + 1):
        built = _build(client, hop, req, policy, extensions, started)
        if isinstance(built, Failure):
            return built
        request, target = built
        try:
            response = await transport.handle_async_request(request)
            response.request = request
        except Exception as exc:
            kind, delivered, message = describe_failure(exc, sent=False)
            return _failure(req, kind, message, delivered, started)
        try:
            if (next_hop := _next_hop(hop, target, response, req, policy)) is not None:
                hop = next_hop
                continue
            # Read a little past the cap, so that a secret the cut would split is whole
            # when the scrubber looks; cut after.
            body, cut = await _read_capped(
                response, policy.max_response_bytes, req.scrub.longest, budget
            )
        except Exception as exc:
            kind, delivered, message = describe_failure(exc, sent=True)
            return _failure(req, kind, message, delivered, started)
        finally:
            with contextlib.suppress(Exception):
                await response.aclose()
        scrubbed = req.scrub.bytes(body)
        return Answer(
            response.status_code,
            req.scrub.headers(list(response.headers.items())),
            scrubbed if cut is None else scrubbed[:cut],
            cut is not None,
            _ms(started),
        )
    return Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects", True, _ms(started))


def _build(
    client: httpx.AsyncClient,
    hop: _Hop,
    req: OnwardRequest,
    policy: SendPolicy,
    extensions: dict[str, Any],
    started: float,
) -> tuple[httpx.Request, str] | Failure:
    """The request to send (overrides applied, the client's headers under the call's own,
    credentials added) and where it goes; a Failure when the egress policy forbids it or
    the URL cannot be sent to."""
    try:
        target, _ = apply_override(hop.url, policy.overrides)
        request = httpx.Request(
            hop.method,
            target,
            headers=_under(client.headers, hop.headers),
            content=hop.content,
            extensions=extensions,
        )
        request = _with_auth(request, req.auth)
        policy.egress.check_host(request.url.raw_host.decode("ascii"))
        return request, target
    except DestinationForbidden as exc:
        return _failure(req, "destination_forbidden", str(exc), False, started)
    except UnicodeEncodeError:  # a header value of a call stored before the API refused it
        return _failure(req, "invalid_request", "a header value is not ASCII", False, started)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
        return _failure(req, "invalid_url", str(exc), False, started)


def _under(defaults: httpx.Headers, own: dict[str, str]) -> list[tuple[str, str]]:
    """`defaults` (the client's headers, as written) with `own` over them: a name `own`
    sets, in any case, replaces the default. One list, which the request reads once."""
    names = {name.lower() for name in own}
    merged = []
    for raw_name, raw_value in defaults.raw:
        name = raw_name.decode("latin-1")
        if name.lower() not in names:
            merged.append((name, raw_value.decode("latin-1")))
    merged.extend(own.items())
    return merged


def _next_hop(
    hop: _Hop, target: str, response: httpx.Response, req: OnwardRequest, policy: SendPolicy
) -> _Hop | None:
    """The request a redirect within the app's hosts asks for; None: this is the answer."""
    if response.status_code not in _REDIRECTS:
        return None
    next_url = redirect_target(hop.url, target, response.headers.get("location"), policy.overrides)
    if not next_url or not may_follow(hop.url, next_url, req.allowed_hosts, req.allowed_ports):
        return None
    return hop.redirected(response.status_code, next_url)


def _with_auth(request: httpx.Request, auth: httpx.Auth) -> httpx.Request:
    """Apply the credentials: passthru's auth styles need no answer, so the flow's first
    step is the whole of it (cheaper than httpx's per-request auth machinery)."""
    flow = auth.sync_auth_flow(request)
    authed = next(flow)
    flow.close()
    return authed


async def _read_capped(
    response: httpx.Response, max_bytes: int, past_bytes: int, budget: MemoryBudget | None
) -> tuple[bytes, int | None]:
    """The body decoded as it arrives (gzip, deflate, br), and where to cut it (None: it is
    whole): at `max_bytes` of decoded bytes, or where the message's `budget` ran out (spent
    piece by piece, so the bodies of one message, read at the same time, share it). Up to
    `past_bytes` more are kept past the cut, for the scrubber to see a secret the cut
    would split. A body whose encoding breaks is cut where it stopped decoding; one in an
    encoding not undone here is not kept at all."""
    source: AsyncIterator[bytes]
    if response.is_stream_consumed:
        # Built with its content in memory (a mock transport): httpx decoded it already.
        source, decoder = _each([response.content]), None
    else:
        source = response.aiter_raw()
        decoder = decoder_for(response.headers.get("content-encoding"))
    out = bytearray()
    limit = max_bytes
    try:
        async for raw in source:
            for piece in decoder.feed(raw) if decoder is not None else (raw,):
                if budget is not None:
                    limit = min(limit, len(out) + budget.left)
                    budget.spend(min(len(piece), max(0, limit - len(out))))
                if len(out) + len(piece) > limit:
                    out += piece[: max(0, limit + past_bytes - len(out))]
                    return bytes(out), limit
                out += piece
    except DecodeError:
        return bytes(out), len(out)
    return bytes(out), None


async def _each(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item
