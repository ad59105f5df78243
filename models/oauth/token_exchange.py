"""A token endpoint is an upstream too: a grant POSTed (the worker's refresh, the API's
authorization-code exchange), the client authenticated as the app says, the answer read raw
and bounded in size, decoding and time, and what its failures mean (`Revoked`: the user
must connect again; `RefreshUnavailable`: try again later). Nothing a token endpoint answers
is logged or repeated: it may echo the secrets it was sent."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import orjson

from models.accounts.credentials import OAuth2Credentials, usable_token
from models.catalog.spec import OAuth2Spec
from models.net.decompress import DecodeError, decoder_for
from models.net.sync_client import deadline


class Revoked(Exception):
    """The refresh token is no longer valid: the user must connect the account again."""


class ClientRefused(Revoked):
    """The token endpoint refused an account's own client id and secret."""


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
    late = RefreshUnavailable(f"no complete answer within {TOKEN_DEADLINE_S:g} s")
    ends_at = time.monotonic() + TOKEN_DEADLINE_S
    raw = bytearray()
    try:
        with (
            deadline(TOKEN_DEADLINE_S),
            http.stream(
                "POST",
                url,
                data=form,
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
            ) as response,
        ):
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
                if time.monotonic() > ends_at:
                    raise late
    except RefreshUnavailable:
        raise
    except Exception as exc:  # any transport failure, the egress policy's included
        if time.monotonic() >= ends_at:
            raise late from None
        raise RefreshUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from None
    decoder = decoder_for(encoding)
    try:
        data = bytes(raw) if decoder is None else b"".join(_capped(decoder.feed(bytes(raw))))
        body = orjson.loads(data)
    except (DecodeError, orjson.JSONDecodeError):
        body = {}
    return status, body if isinstance(body, dict) else {}


# The longest lifetime believed.
MAX_EXPIRES_IN_S = 10 * 365 * 86_400.0
# An OAuth2 `error` code as RFC 6749 writes them; anything else is not repeated.
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")
# The `error` codes of a token endpoint (RFC 6749 section 5.2): the only text of its answer
# ever repeated or stored.
TOKEN_ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)


def expires_at_of(expires_in: object, now_s: float) -> float | None:
    """When a token handed out now expires; None when the endpoint did not say (or said
    something that is not a finite, positive number of seconds)."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return None
    if not math.isfinite(expires_in) or expires_in <= 0:
        return None
    return now_s + min(float(expires_in), MAX_EXPIRES_IN_S)


def expiring(expires: float | None, now_s: float, margin_s: float) -> bool:
    """Whether a token expiring at `expires` (None: not said) is within `margin_s` of it."""
    return expires is not None and expires - margin_s <= now_s


def basic_client(client_id: str, client_secret: str) -> httpx.BasicAuth:
    """HTTP Basic client authentication, id and secret form-encoded first, as RFC 6749
    section 2.3.1 says."""
    return httpx.BasicAuth(quote_plus(client_id), quote_plus(client_secret))


def client_form(oauth2: OAuth2Spec) -> dict[str, str]:
    """The client's id and secret as form fields (`token_auth: body`)."""
    form = {"client_id": oauth2.client_id} if oauth2.client_id else {}
    if oauth2.client_secret:
        form["client_secret"] = oauth2.client_secret.get_secret_value()
    return form


def client_auth(oauth2: OAuth2Spec) -> httpx.BasicAuth | None:
    """HTTP Basic client authentication for an app whose token endpoint wants it
    (`token_auth: basic`)."""
    if oauth2.token_auth != "basic" or not oauth2.client_id:  # noqa: S105 - a style
        return None
    secret = oauth2.client_secret.get_secret_value() if oauth2.client_secret else ""
    return basic_client(oauth2.client_id, secret)


def error_code(value: object, fallback: str) -> str:
    """An OAuth2 error code fit to repeat (lower-case letters and `_`), else `fallback`."""
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else fallback


def token_error(body: dict[str, Any]) -> str | None:
    """A token endpoint's `error`, if it is one of RFC 6749's codes; else None."""
    code = body.get("error")
    return code if isinstance(code, str) and code in TOKEN_ERROR_CODES else None


def exchange_code(
    http: httpx.Client,
    oauth2: OAuth2Spec,
    token_url: str,
    *,
    code: str,
    redirect_uri: str,
    verifier: str | None,
    now_s: float,
) -> OAuth2Credentials:
    """The authorization code (with its PKCE verifier, if any) exchanged at `token_url` for
    tokens. Raises RefreshUnavailable whose message is ours alone (a status and an OAuth2
    error code at most), never the endpoint's text."""
    form: dict[str, Any] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    auth = client_auth(oauth2)
    if auth is None:
        form.update(client_form(oauth2))
    status, body = post_form(http, token_url, form, auth=auth)
    access_token, refresh_token = body.get("access_token"), body.get("refresh_token")
    if status != 200 or not usable_token(access_token):
        why = token_error(body) or "no usable access_token"
        raise RefreshUnavailable(f"the token endpoint answered {status}: {why}")
    # Built, not validated: each token was checked above (a validation error would quote it).
    return OAuth2Credentials.model_construct(
        access_token=access_token,
        refresh_token=refresh_token if usable_token(refresh_token) else None,
        expires_at=expires_at_of(body.get("expires_in"), now_s),
        refreshed_at=None,
    )
