"""The per-account lock that makes one worker at a time ask an account's token endpoint
(a refresh, a client credentials fetch); the others wait, then read what it stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import redis

from models.keys import PREFIX
from models.oauth.token_exchange import RefreshUnavailable

LOCK_TTL_S = 30.0  # a refresher that died frees the lock after this
LOCK_WAIT_S = 20.0  # how long a call waits for another worker's refresh


# Called while the lock is held, to keep it LOCK_TTL_S more: False once it is not held.
KeepLock = Callable[[], bool]


@contextmanager
def account_lock(client: redis.Redis, account_id: str) -> Iterator[KeepLock]:
    """Hold the account's token lock: one worker at a time asks its token endpoint. Yields
    a function that keeps the lock LOCK_TTL_S longer, for work that must stay alone with
    the account (storing tokens after a rotation), and says False if it was lost."""
    lock = client.lock(f"{PREFIX}:oauth-lock:{account_id}", timeout=LOCK_TTL_S)
    try:
        got = lock.acquire(blocking_timeout=LOCK_WAIT_S)
    except redis.RedisError as exc:
        raise RefreshUnavailable(
            f"the refresh lock is unavailable ({type(exc).__name__})"
        ) from None
    if not got:
        raise RefreshUnavailable("another worker is still refreshing this account's token")

    def keep() -> bool:
        try:
            lock.extend(LOCK_TTL_S, replace_ttl=True)
        except redis.RedisError:  # expired and perhaps taken (LockError), or Redis gone
            return False
        return True

    try:
        yield keep
    finally:
        # A lock that expired while refreshing, or a Redis gone meanwhile, has nothing
        # to release: the lock's TTL frees it.
        with suppress(redis.RedisError):
            lock.release()
