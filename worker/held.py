"""What a worker process holds and has not finished, kept in Redis per process: the Celery
messages it received (prefetched, waiting for a countdown, or running) and the interactive
ids its lane threads popped. When the process is found dead, the sweeper takes both and
publishes those calls again at once, instead of waiting for Redis' visibility timeout or
PASSTHRU_REPUBLISH_AFTER_S. The cost stays with what the dead process held, never with the
backlog. A duplicate is harmless: the claim lets one delivery run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import redis

from models.broker import VISIBILITY_TIMEOUT_S
from models.interactive_due import as_text, held_ids
from models.keys import HELD_LANE_PREFIX, HELD_PREFIX

log = logging.getLogger("passthru.worker")


def messages_key(worker_id: str) -> str:
    return f"{HELD_PREFIX}:{worker_id}"


def lane_key(worker_id: str) -> str:
    return f"{HELD_LANE_PREFIX}:{worker_id}"


class Holds(Protocol):
    def take(self, worker_id: str) -> list[str] | None:
        """Every call id a (dead) process held, removed as they are read; None if they
        could not be read (try again at the next sweep)."""
        ...


class RedisHolds:
    """A process's own record of its messages (hold/release), and the sweeper's take."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def hold(self, worker_id: str, message_id: str, call_ids: Sequence[str]) -> None:
        key = messages_key(worker_id)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(key, message_id, ",".join(call_ids))
                # Past the visibility timeout Redis gives the messages back anyway.
                pipe.expire(key, VISIBILITY_TIMEOUT_S)
                pipe.execute()
        except redis.RedisError as exc:
            # The message came through this Redis; if it is away, PASSTHRU_REPUBLISH_AFTER_S
            # still covers the calls.
            log.warning("held messages: not recorded (%s)", type(exc).__name__)

    def release(self, worker_id: str, message_id: str) -> None:
        try:
            self._client.hdel(messages_key(worker_id), message_id)
        except redis.RedisError as exc:
            log.warning("held messages: not released (%s)", type(exc).__name__)

    def take(self, worker_id: str) -> list[str] | None:
        messages, lane = messages_key(worker_id), lane_key(worker_id)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hvals(messages)
                pipe.lrange(lane, 0, -1)
                pipe.delete(messages, lane)
                held, popped, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("held messages of %s: not read (%s)", worker_id, type(exc).__name__)
            return None
        ids = [i for value in held for i in held_ids(value)]
        return sorted({*ids, *(as_text(i) for i in popped)})


class NoHolds:
    """Nothing recorded (tests of other things): the sweeper's republish covers all."""

    def take(self, worker_id: str) -> list[str] | None:
        return []
