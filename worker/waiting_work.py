"""Whether messages wait in Redis for a free thread on the call queues this worker consumes:
how a bulk message waiting for its turn, holding no chunk (worker/bulk_turns.py), knows that
its thread would serve someone else. The queues a free thread asks before the bulk lane's
takes, or in turn with them, count (upkeep, the interactive queue, the webhooks' and the
bulk shards whose messages carry ids: models/queue_order.py); a message handed back goes
to the end of its queue, and its queue to the end of the turn. A message sent with a
countdown counts while it waits in Redis, and again once it is due and waits in the worker's
thread pool for a free thread.
The queues' lengths are read in one pipeline, at most once per `every_s` for all of a
process's threads, and each message seen waiting is claimed by one thread only, so no more
messages are handed back than wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from functools import lru_cache

import redis
from celery.worker import state as celery_state
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.keys import BULK_QUEUES, QUEUE_INTERACTIVE, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS
from models.settings import get_settings

_ASKED_FIRST = frozenset((QUEUE_MAINTENANCE, QUEUE_INTERACTIVE, QUEUE_WEBHOOKS, *BULK_QUEUES))
READ_TIMEOUT_S = 1.0
# How often the process reads the queues' lengths, at most.
READ_EVERY_S = 0.25
# Messages the worker took and handed to its thread pool, waiting there for a free thread (a
# countdown's, when it comes due): other work too, counted under this name.
IN_POOL = "(the thread pool)"


class WaitingWork:
    def __init__(
        self,
        client: redis.Redis,
        queues: Callable[[], Collection[str]],
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
        in_pool: Callable[[], int] = lambda: 0,
    ) -> None:
        self._client = client
        self._in_pool = in_pool  # messages handed to the thread pool, not yet started
        self._queues = queues  # read each time: the worker adds its bulk shards after start
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._lengths: dict[str, int] = {}
        self._claimed: dict[str, int] = {}  # since the last read, by the queue asking
        self._read_at: float | None = None

    def claim(self, queue: str) -> bool:
        """Whether a message waits on a consumed call queue other than `queue` that no other
        thread of the process claimed since the lengths were read (it is then this one's
        to make room for). When Redis cannot be read, no: the asking message keeps waiting
        where it is."""
        with self._lock:
            waiting = sum(n for name, n in self._read().items() if name != queue)
            if waiting <= self._claimed.get(queue, 0):
                return False
            self._claimed[queue] = self._claimed.get(queue, 0) + 1
            return True

    def _read(self) -> dict[str, int]:
        """The queues' lengths (the lock held), read again once `every_s` passed."""
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
        self._lengths[IN_POOL] = self._in_pool()
        self._claimed.clear()
        self._read_at = now
        return self._lengths


@lru_cache(maxsize=1)
def waiting_work() -> WaitingWork:
    """The process's: the queues its Celery consumer takes messages from, on the broker."""
    from worker.app import app

    # Short timeouts and no retries: the waiting messages asking wait on this read, under
    # its lock, and an unanswered read is no other work.
    client = redis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=READ_TIMEOUT_S,
        socket_connect_timeout=READ_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return WaitingWork(
        client, lambda: tuple(app.amqp.queues.consume_from), READ_EVERY_S, in_pool=_in_pool
    )


def _in_pool() -> int:
    """Messages received (a countdown's once due) and not yet started by a thread."""
    return max(0, len(celery_state.reserved_requests) - len(celery_state.active_requests))
