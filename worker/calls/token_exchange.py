"""A token endpoint is an upstream too: a grant POSTed, its answer read raw and bounded in
size, decoding and time, and what its failures mean (`Revoked`: the user must connect
again; `RefreshUnavailable`: try again later); the per-account lock that makes one worker
ask it at a time; how long a token it gave lives."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import quote_plus

import httpx
import orjson
import redis

from models.keys import PREFIX
from worker.net.decompress import DecodeError, decoder_for


class Revoked(Exception):
    """The refresh token is no longer valid: the user must connect the account again."""


class ClientRefused(Revoked):
    """The token endpoint refused an account's own client id and secret."""


class RefreshUnavailable(Exception):
    """The token endpoint could not be reached or answered badly; try again later."""


LOCK_TTL_S = 30.0  # a refresher that died frees the lock after this
LOCK_WAIT_S = 20.0  # how long a call waits for another worker's refresh


@contextmanager
def account_lock(client: redis.Redis, account_id: str) -> Iterator[None]:
    """Hold the account's token lock: one worker at a time asks its token endpoint."""
    lock = client.lock(f"{PREFIX}:oauth-lock:{account_id}", timeout=LOCK_TTL_S)
    try:
        got = lock.acquire(blocking_timeout=LOCK_WAIT_S)
    except redis.RedisError as exc:
        raise RefreshUnavailable(
            f"the refresh lock is unavailable ({type(exc).__name__})"
        ) from None
    if not got:
        raise RefreshUnavailable("another worker is still refreshing this account's token")
    try:
        yield
    finally:
        # A lock that expired while refreshing, or a Redis gone meanwhile, has nothing
        # to release: the lock's TTL frees it.
        with suppress(redis.RedisError):
            lock.release()


# The longest lifetime believed.
MAX_EXPIRES_IN_S = 10 * 365 * 86_400.0


def expires_at(expires_in: object, now_s: float) -> float | None:
    """When a token the endpoint just gave expires; None when it did not say (or said
    something that is not a finite, positive number of seconds)."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return None
    if not math.isfinite(expires_in) or expires_in <= 0:
        return None
    return now_s + min(float(expires_in), MAX_EXPIRES_IN_S)


def expiring(expires: float | None, now_s: float, margin_s: float) -> bool:
    return expires is not None and expires - margin_s <= now_s


def basic_client(client_id: str, client_secret: str) -> httpx.BasicAuth:
    """HTTP Basic client authentication, id and secret form-encoded first, as RFC 6749
    section 2.3.1 says."""
    return httpx.BasicAuth(quote_plus(client_id), quote_plus(client_secret))


# A token endpoint's answer: at most this long, within this long (the refresh lock lives 30 s).
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
TOKEN_DEADLINE_S = 15.0


def _capped(pieces: Iterator[bytes]) -> Iterator[bytes]:
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > MAX_TOKEN_ANSWER_BYTES:
            raise RefreshUnavailable("the token endpoint's answer is too long")
        yield piece


def post_form(
    http: httpx.Client, url: str, form: dict[str, Any], *, auth: httpx.Auth | None = None
) -> tuple[int, dict[str, Any]]:
    """POST to a token endpoint (the client authenticated by `auth`, if given, else in the
    form): (status, the JSON object it answered, or {}). The answer
    is read raw, at most MAX_TOKEN_ANSWER_BYTES of it, decoded under the same cap, all
    within TOKEN_DEADLINE_S: a token endpoint is an upstream too."""
    deadline = time.monotonic() + TOKEN_DEADLINE_S
    raw = bytearray()
    try:
        with http.stream(
            "POST",
            url,
            data=form,
            auth=auth or httpx.USE_CLIENT_DEFAULT,
            headers={"Accept": "application/json", "Accept-Encoding": "identity"},
        ) as response:
            status, encoding = response.status_code, response.headers.get("content-encoding")
            if response.is_stream_consumed:  # built in memory (a mock): decoded already
                chunks: Iterable[bytes] = [response.content]
                encoding = None
            else:
                chunks = response.iter_raw()
            for chunk in chunks:
                raw += chunk
                if len(raw) > MAX_TOKEN_ANSWER_BYTES:
                    raise RefreshUnavailable("the token endpoint's answer is too long")
                if time.monotonic() > deadline:
                    raise RefreshUnavailable(f"no complete answer within {TOKEN_DEADLINE_S:g} s")
    except RefreshUnavailable:
        raise
    except Exception as exc:  # any transport failure, the egress policy's included
        raise RefreshUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from None
    decoder = decoder_for(encoding)
    try:
        data = bytes(raw) if decoder is None else b"".join(_capped(decoder.feed(bytes(raw))))
        body = orjson.loads(data)
    except (DecodeError, orjson.JSONDecodeError):
        body = {}
    return status, body if isinstance(body, dict) else {}
