"""The per-account lock that makes one worker at a time ask an account's token endpoint
(a refresh, a client credentials fetch); the others wait, then read what it stored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis

from models.keys import PREFIX
from models.oauth.token_exchange import RefreshUnavailable

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
