"""Whether the broker lost its messages: Redis restarted without persistence, so every
waiting call and delivery must be published again (worker/sweeper.py)."""

from __future__ import annotations

import secrets
from typing import Protocol

import redis

from models.keys import KEY_BROKER_EPOCH


class BrokerEpoch(Protocol):
    def lost(self) -> bool:
        """True (once) when the broker lost its messages since the last look (Redis restarted
        without persistence): every waiting call must be published again."""
        ...


class RedisEpoch:
    """A key set once per Redis lifetime: its absence means Redis lost its data."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def lost(self) -> bool:
        return self._client.set(KEY_BROKER_EPOCH, secrets.token_hex(8), nx=True) is True


class EpochKept:
    """A broker that never loses its messages (tests of other things)."""

    def lost(self) -> bool:
        return False
