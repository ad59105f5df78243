"""Requests and answers, written once for both clients (when to retry: `_retry`).

The SDK's logic is written as generators ("operations") that yield what they need done --
send this `ApiRequest`, or `Sleep` this long -- and get back the httpx answer (or the httpx
error). `run_sync` and `run_async` are the only code that touches the network or the
clock's sleep, so the sync and async clients share every decision: which request, when to
retry, how long to wait, how an answer becomes a result or an exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from passthru_client._answers import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_RESPONSE_BYTES,
    aread_capped,
    read_capped,
)
from passthru_client._errors import APIConnectionError, PassthruError, error_from_body
from passthru_client._retry import MAYBE_SENT, NOT_SENT, RetryPolicy
from passthru_client._types import ErrorDetail
from passthru_client._version import __version__

T = TypeVar("T")

# Requests that may be repeated without doing twice what they do; a POST or PATCH becomes
# one when it carries an Idempotency-Key (the server's own retry rule).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class ApiRequest:
    """One request to the API, relative to the client's base URL."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json: Any = None
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    long_poll_s: float = 0.0  # the API may hold its answer this long (added to the read timeout)

    @property
    def repeatable(self) -> bool:
        """Whether sending it twice is safe even if the first one was acted on."""
        return self.method.upper() in IDEMPOTENT_METHODS or any(
            name.lower() == "idempotency-key" for name in self.headers
        )


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = ApiRequest | Sleep
Outcome = httpx.Response | httpx.TransportError | None
Op = Generator[Step, Outcome, T]
"""An operation: yields steps, receives their outcomes, returns its result."""


def decode(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer (None when empty); raise the matching PassthruError else."""
    if response.is_success:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise PassthruError(
                "invalid_response",
                [ErrorDetail("body", f"not JSON: {response.text[:200]!r}")],
                response.status_code,
                headers=response.headers,
            ) from None
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise error_from_body(response.status_code, body, response.headers)


def parsed(request: ApiRequest, data: Any, parse: Callable[[Any], T]) -> T:
    """`parse(data)`; an answer it cannot read is an `invalid_response` PassthruError, never
    a KeyError or TypeError from inside the SDK."""
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        raise PassthruError(
            "invalid_response",
            [
                ErrorDetail(
                    "body",
                    f"the answer to {request.method} {request.path} is not the API's ({reason}); "
                    "check that base_url is passthru's",
                )
            ],
        ) from None


def exchange(request: ApiRequest, policy: RetryPolicy) -> Op[Any]:
    """Send `request`, retrying under `policy`; return the decoded JSON answer."""
    retries = 0
    while True:
        outcome = yield request
        if isinstance(outcome, httpx.Response):
            delay = policy.after_response(request, outcome, retries)
            if delay is None:
                return decode(outcome)
        elif isinstance(outcome, httpx.TransportError):
            delay = policy.after_error(request, outcome, retries)
            if delay is None:
                raise _connection_error(request, outcome, retries) from outcome
        else:  # pragma: no cover - a driver bug
            raise TypeError(f"a request step got {outcome!r}")
        yield Sleep(delay)
        retries += 1


def _connection_error(
    request: ApiRequest, error: httpx.TransportError, retries: int
) -> APIConnectionError:
    message = f"{type(error).__name__}: {error or 'no detail'}"
    if retries:
        message += f" (after {retries} {'retry' if retries == 1 else 'retries'})"
    maybe_sent = isinstance(error, MAYBE_SENT) and not isinstance(error, NOT_SENT)
    if maybe_sent and not request.repeatable:
        message += (
            "; not retried: the API may have acted on it (give an idempotency_key "
            "to make it safe to retry)"
        )
    return APIConnectionError(
        "connection_error", [ErrorDetail(f"{request.method} {request.path}", message)]
    )


def _timeout(client: httpx.Client | httpx.AsyncClient, request: ApiRequest) -> httpx.Timeout:
    base = client.timeout
    if not request.long_poll_s or base.read is None:
        return base
    return httpx.Timeout(
        connect=base.connect,
        read=base.read + request.long_poll_s,
        write=base.write,
        pool=base.pool,
    )


def build(client: httpx.Client | httpx.AsyncClient, request: ApiRequest) -> httpx.Request:
    return client.build_request(
        request.method,
        request.path,
        params=dict(request.params) if request.params else None,
        json=request.json,
        # as httpx encodes a str (ASCII); a value given as bytes (X-User-ID's UTF-8) as is
        headers=[
            (name.encode("ascii"), value if isinstance(value, bytes) else value.encode("ascii"))
            for name, value in request.headers.items()
        ],
        timeout=_timeout(client, request),
    )


def run_sync(
    op: Op[T],
    client: httpx.Client,
    sleep: Callable[[float], None],
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> T:
    """Drive an operation to its end with a sync httpx client."""
    outcome: Outcome = None
    try:
        while True:
            step = op.send(outcome)
            if isinstance(step, Sleep):
                sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = read_capped(client, build(client, step), max_response_bytes)
            except httpx.TransportError as exc:
                outcome = exc
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        op.close()


async def run_async(
    op: Op[T],
    client: httpx.AsyncClient,
    sleep: Callable[[float], Awaitable[None]],
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> T:
    """Drive an operation to its end with an async httpx client."""
    outcome: Outcome = None
    try:
        while True:
            step = op.send(outcome)
            if isinstance(step, Sleep):
                await sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = await aread_capped(client, build(client, step), max_response_bytes)
            except httpx.TransportError as exc:
                outcome = exc
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        op.close()


def client_headers(api_key: str) -> dict[str, str]:
    """The headers every request carries."""
    if not api_key or not api_key.strip():
        raise ValueError("api_key is required (the tenant's API key, 'pt_...')")
    if not all("!" <= c <= "~" for c in api_key.strip()):  # never repeated: it is a secret
        raise ValueError("api_key holds a character an API key never has (a space, a line break)")
    return {
        "Authorization": f"Bearer {api_key.strip()}",
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
        "User-Agent": f"passthru-client-python/{__version__} httpx/{httpx.__version__}",
    }
