"""Whether calls wait in Redis on the queues this worker consumes, besides one bulk shard:
how a message waiting past its shard's share of the threads (worker/budget.py) knows that
its thread would serve someone else. Only the queues a free thread asks before that shard
count (the interactive queue and the other bulk shards, models/queue_order.py): a thread
handed back while only webhooks or upkeep wait would take the same shard's next message.
A message sent with a countdown (a retry) counts while it waits in Redis: once taken, it
waits in the worker's memory, not on a thread, so it costs at most one hand-back.
The queues' lengths are read in one pipeline, at most once per `every_s` for all of a
process's threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from functools import lru_cache

import redis

from models.keys import BULK_QUEUES, QUEUE_INTERACTIVE
from models.settings import get_settings
from worker.budget import LOOK_EVERY_S

_ASKED_FIRST = frozenset((QUEUE_INTERACTIVE, *BULK_QUEUES))
READ_TIMEOUT_S = 1.0


class WaitingWork:
    def __init__(
        self,
        client: redis.Redis,
        queues: Callable[[], Collection[str]],
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._queues = queues  # read each time: the worker adds its bulk shards after start
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._lengths: dict[str, int] = {}
        self._read_at: float | None = None

    def besides(self, queue: str) -> bool:
        """Whether a message waits on a consumed call queue other than `queue`. When Redis
        cannot be read, no: the asking message keeps waiting where it is."""
        return any(n for name, n in self._read().items() if name != queue)

    def _read(self) -> dict[str, int]:
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._every_s:
                return self._lengths
            names = sorted(q for q in self._queues() if q in _ASKED_FIRST)
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.llen(name)
                    lengths = pipe.execute()
            except redis.RedisError:
                lengths = [0] * len(names)
            self._lengths = dict(zip(names, (int(n) for n in lengths), strict=True))
            self._read_at = now
            return self._lengths


@lru_cache(maxsize=1)
def waiting_work() -> WaitingWork:
    """The process's: the queues its Celery consumer takes messages from, on the broker."""
    from worker.app import app

    # Short timeouts: the waiting messages asking wait on this read, under its lock.
    client = redis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=READ_TIMEOUT_S,
        socket_connect_timeout=READ_TIMEOUT_S,
    )
    return WaitingWork(
        client,
        lambda: tuple(app.amqp.queues.consume_from),
        LOOK_EVERY_S,
    )
