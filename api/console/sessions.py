"""Console sessions: an opaque random token in an HttpOnly cookie, mapped in Redis to the
SHA-256 of the API key that opened it.

Neither the key nor the token is stored in the clear: Redis holds the token's SHA-256 as
the key's name and the API key's SHA-256 (what the database holds) as its value, for
SESSION_TTL_S. Each request finds its tenant through the API's own `Authenticator`, so a
replaced or deleted API key closes its sessions too.

One API key holds at most MAX_SESSIONS_PER_KEY sessions: signing in once more closes its
oldest, so a script signing in over and over cannot grow Redis beyond that.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

import redis

from models.errors import ApiError, ErrorDetail
from models.keys import CONSOLE_SESSION_PREFIX, CONSOLE_SESSIONS_OF_PREFIX

# How long a console session lasts from sign-in.
SESSION_TTL_S = 8 * 3600
# The session cookie, and the cookie that binds a signed-out browser's sign-in form.
SESSION_COOKIE = "passthru_console"
PRESESSION_COOKIE = "passthru_console_pre"
# Random bytes in a session token.
TOKEN_BYTES = 32
# Longest cookie value looked up (a token is 43 characters).
MAX_TOKEN_CHARS = 100
# Sessions one API key may hold at once: as many browsers as a team signs in with in a day.
MAX_SESSIONS_PER_KEY = 100


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
    def __init__(
        self,
        client: redis.Redis,
        ttl_s: int = SESSION_TTL_S,
        max_per_key: int = MAX_SESSIONS_PER_KEY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._max_per_key = max_per_key
        self._clock = clock

    def disconnect(self) -> None:
        """Close the store's Redis connections (they open again when used)."""
        self._redis.close()

    def open(self, key_hash: str) -> str:
        """A new session's token, for the API key whose SHA-256 is `key_hash`; the key's
        oldest sessions beyond MAX_SESSIONS_PER_KEY are closed."""
        token = new_token()
        session, index, now = _key(token), f"{CONSOLE_SESSIONS_OF_PREFIX}:{key_hash}", self._clock()
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(session, key_hash, ex=self._ttl_s)
                pipe.zadd(index, {session: now})
                pipe.zremrangebyscore(index, "-inf", now - self._ttl_s)  # expired by now
                pipe.zrange(index, 0, -(self._max_per_key + 1))  # the oldest beyond the most
                pipe.expire(index, self._ttl_s)
                oldest = pipe.execute()[3]
            if oldest:
                with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(*oldest)
                    pipe.zrem(index, *oldest)
                    pipe.execute()
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
