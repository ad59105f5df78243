"""Console sessions: an opaque random token in an HttpOnly cookie, mapped in Redis to the
SHA-256 of the API key that opened it.

Neither the key nor the token is stored in the clear: Redis holds the token's SHA-256 as
the key's name and the API key's SHA-256 (what the database holds) as its value, for
SESSION_TTL_S. Each request finds its tenant through the API's own `Authenticator`, so a
replaced or deleted API key closes its sessions too.
"""

from __future__ import annotations

import hashlib
import secrets

import redis

from models.errors import ApiError, ErrorDetail
from models.keys import CONSOLE_SESSION_PREFIX

# How long a console session lasts from sign-in.
SESSION_TTL_S = 8 * 3600
# The session cookie, and the cookie that binds a signed-out browser's sign-in form.
SESSION_COOKIE = "passthru_console"
PRESESSION_COOKIE = "passthru_console_pre"
# Random bytes in a session token.
TOKEN_BYTES = 32
# Longest cookie value looked up (a token is 43 characters).
MAX_TOKEN_CHARS = 100


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _key(token: str) -> str:
    return f"{CONSOLE_SESSION_PREFIX}:{hashlib.sha256(token.encode()).hexdigest()}"


def store_unavailable(exc: redis.RedisError) -> ApiError:
    return ApiError(
        # The class only: the message names internal hosts.
        "unavailable",
        [ErrorDetail("session", f"sessions are unavailable ({type(exc).__name__}); retry shortly")],
        503,
    )


class SessionStore:
    def __init__(self, client: redis.Redis, ttl_s: int = SESSION_TTL_S) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def disconnect(self) -> None:
        """Close the store's Redis connections (they open again when used)."""
        self._redis.close()

    def open(self, key_hash: str) -> str:
        """A new session's token, for the API key whose SHA-256 is `key_hash`."""
        token = new_token()
        try:
            self._redis.set(_key(token), key_hash, ex=self._ttl_s)
        except redis.RedisError as exc:
            raise store_unavailable(exc) from None
        return token

    def key_hash(self, token: str | None) -> str | None:
        """The API key hash of the session `token` opened, or None if it is not open."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            value = self._redis.get(_key(token))
        except redis.RedisError as exc:
            raise store_unavailable(exc) from None
        return value.decode() if isinstance(value, bytes) else None

    def close(self, token: str | None) -> None:
        if token and len(token) <= MAX_TOKEN_CHARS:
            try:
                self._redis.delete(_key(token))
            except redis.RedisError as exc:
                raise store_unavailable(exc) from None
