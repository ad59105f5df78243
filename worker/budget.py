"""How many calls a worker process's Celery threads hold at once, from their claim to their
last stored result. Each thread works on one message, and a bulk message carries up to
BULK_CHUNK calls: 32 threads could claim 3,200 calls, of which `PASSTHRU_MAX_CONNECTIONS`
are on the wire and the rest wait in the process. Those waiting calls bought nothing but
claims and stores running side by side, which slowed the interactive lane beside them and
the drain itself (measured: docs/performance.md). So a message waits, unclaimed, until the
calls already held leave room for its own; small messages (single calls, small batches)
still use every thread.

A message of one call never waits (an interactive retry, or a call published again), nor
does any message when the process holds nothing, however large it is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from prometheus_client import Gauge

from models.settings import get_settings
from worker import metrics

# Calls held per onward connection: the ones on the wire, and a message's worth more
# waiting to follow, so the connections never wait for a claim.
HELD_PER_CONNECTION = 3


class CallBudget:
    """A count of the calls held, shared by the threads of one process; `held` and
    `waiting` show it (the calls held, the messages waiting for room) when given."""

    def __init__(self, limit: int, held: Gauge | None = None, waiting: Gauge | None = None) -> None:
        self._limit = limit
        self._held = 0
        self._changed = threading.Condition()
        self._held_gauge = held
        self._waiting_gauge = waiting

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def hold(self, calls: int) -> Iterator[None]:
        """Hold `calls` for the duration of the block, once they fit under the limit."""
        with self._changed:
            if calls > 1 and self._held and not self._fits(calls):
                self._wait_for_room(calls)
            self._held += calls
            self._show(self._held_gauge, calls)
            if self._held < self._limit:
                self._changed.notify()  # room for more: the next waiter looks, and so on
        try:
            yield
        finally:
            with self._changed:
                self._held -= calls
                self._show(self._held_gauge, -calls)
                # One waiter at a time: with every waiting thread woken on each release,
                # bulk ran slower than with no budget at all (docs/performance.md).
                self._changed.notify()

    def _wait_for_room(self, calls: int) -> None:
        self._show(self._waiting_gauge, 1)
        try:
            self._changed.wait_for(lambda: not self._held or self._fits(calls))
        finally:
            self._show(self._waiting_gauge, -1)

    def _fits(self, calls: int) -> bool:
        return self._held + calls <= self._limit

    @staticmethod
    def _show(gauge: Gauge | None, change: int) -> None:
        if gauge is not None:
            gauge.inc(change)


@lru_cache(maxsize=1)
def bulk_budget() -> CallBudget:
    """The process's budget: HELD_PER_CONNECTION calls per onward connection."""
    limit = HELD_PER_CONNECTION * get_settings().max_connections
    return CallBudget(limit, metrics.CALLS_HELD, metrics.MESSAGES_WAITING)
