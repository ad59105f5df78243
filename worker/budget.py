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
from dataclasses import dataclass, field
from functools import lru_cache

from prometheus_client import Gauge

from models.settings import get_settings
from worker import metrics
from worker.shares import tenant_share

# Calls held per onward connection: the ones on the wire, and a message's worth more
# waiting to follow, so the connections never wait for a claim.
HELD_PER_CONNECTION = 3


@dataclass(eq=False)
class _Waiter:
    calls: int
    owner: str
    admitted: threading.Event = field(default_factory=threading.Event)


class CallBudget:
    """A count of the calls held, shared by the threads of one process; `held` and
    `waiting` show it (the calls held, the messages waiting for room) when given.

    Each message may name its owner (the bulk shard it came from, which stands for its
    tenants: models/broker.py), and one owner holds at most `tenant_share(limit)` calls,
    so one tenant's slow batch never holds the whole budget while another tenant's message
    waits for it. Waiting messages are let in in arrival order, except that one whose
    owner holds its share lets the ones behind it pass."""

    def __init__(self, limit: int, held: Gauge | None = None, waiting: Gauge | None = None) -> None:
        self._limit = limit
        self._share = tenant_share(limit)
        self._held = 0
        self._held_by: dict[str, int] = {}
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()
        self._held_gauge = held
        self._waiting_gauge = waiting

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def hold(self, calls: int, owner: str = "") -> Iterator[None]:
        """Hold `calls` for the duration of the block, once they fit under the limit (and
        `owner`'s share of it)."""
        with self._lock:
            waiter = None
            if calls > 1 and not self._fits(calls, owner):
                waiter = _Waiter(calls, owner)
                self._waiters.append(waiter)
                self._show(self._waiting_gauge, 1)
            else:
                self._take(calls, owner)
        if waiter is not None:
            waiter.admitted.wait()
        try:
            yield
        finally:
            with self._lock:
                self._held -= calls
                self._show(self._held_gauge, -calls)
                if owner:
                    left = self._held_by.pop(owner) - calls
                    if left:
                        self._held_by[owner] = left
                self._admit()

    def _admit(self) -> None:
        """Let in the waiting messages that fit now, in arrival order: one short of room
        stops the ones behind it, one whose owner holds its share does not."""
        for waiter in list(self._waiters):
            if self._fits(waiter.calls, waiter.owner):
                self._waiters.remove(waiter)
                self._show(self._waiting_gauge, -1)
                self._take(waiter.calls, waiter.owner)
                waiter.admitted.set()
            elif not waiter.owner or not self._fits(waiter.calls, ""):
                return  # short of room: the ones behind wait their turn

    def _fits(self, calls: int, owner: str) -> bool:
        """Nothing held fits anything; else the limit, and the owner's share unless it
        holds nothing."""
        if not self._held:
            return True
        if self._held + calls > self._limit:
            return False
        held_by = self._held_by.get(owner, 0) if owner else 0
        return not held_by or held_by + calls <= self._share

    def _take(self, calls: int, owner: str) -> None:
        self._held += calls
        self._show(self._held_gauge, calls)
        if owner:
            self._held_by[owner] = self._held_by.get(owner, 0) + calls

    @staticmethod
    def _show(gauge: Gauge | None, change: int) -> None:
        if gauge is not None:
            gauge.inc(change)


@lru_cache(maxsize=1)
def bulk_budget() -> CallBudget:
    """The process's budget: HELD_PER_CONNECTION calls per onward connection."""
    limit = HELD_PER_CONNECTION * get_settings().max_connections
    return CallBudget(limit, metrics.CALLS_HELD, metrics.MESSAGES_WAITING)
