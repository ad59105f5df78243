"""A token endpoint is an upstream too: the refresh grant POSTed, its answer read raw and
bounded in size, decoding and time, and what its failures mean (`Revoked`: the user must
connect again; `RefreshUnavailable`: try again later)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import orjson

from worker.net.decompress import DecodeError, decoder_for


class Revoked(Exception):
    """The refresh token is no longer valid: the user must connect the account again."""


class RefreshUnavailable(Exception):
    """The token endpoint could not be reached or answered badly; try again later."""


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
