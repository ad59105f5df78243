"""How many calls a worker process's Celery threads hold at once, from their claim to their
last stored result. Each thread works on one message, and a bulk message carries up to
BULK_CHUNK calls: 32 threads could claim 3,200 calls, of which `PASSTHRU_MAX_CONNECTIONS`
are on the wire and the rest wait in the process. Those waiting calls bought nothing but
claims and stores running side by side, which slowed the interactive lane beside them and
the drain itself (measured: docs/performance.md). So a message waits, unclaimed, until the
calls already held leave room for its own; small messages (single calls, small batches)
still use every thread, three quarters of them for one bulk shard (below).

A message of one call from the interactive queue never waits (a retry, or a call published
again), nor does any message when the process holds nothing, however large it is.

A waiting message holds a Celery thread, and a thread is what takes the next message off
Redis. So one owner, a bulk chunk's tenant, also holds at most `tenant_share` of the
threads' messages: a thread takes no chunk of a tenant at its share of either (`full`,
worker/bulk_turns.py), so one tenant's backlog never keeps every thread from taking another
tenant's chunk.
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
    reserved: bool
    admitted: threading.Event = field(default_factory=threading.Event)


class CallBudget:
    """A count of the calls held, shared by the `threads` threads of one process; `held` and
    `waiting` show it (the calls held, the messages waiting for room) when given.

    Each message may name its owner (a bulk chunk's tenant). One owner holds at most
    `tenant_share(limit)` calls, so one tenant's slow batch never holds the whole budget
    while another tenant's message waits for it, and at most `tenant_share(threads)`
    messages. Waiting messages are let in in arrival order, except that one whose owner
    holds its share lets the ones behind it pass."""

    def __init__(
        self,
        limit: int,
        held: Gauge | None = None,
        waiting: Gauge | None = None,
        threads: int = 0,
    ) -> None:
        self._limit = limit
        self._share = tenant_share(limit)
        self._thread_share = tenant_share(threads) if threads else 0
        self._held = 0
        self._held_by: dict[str, int] = {}
        self._messages_by: dict[str, int] = {}  # an owner's messages held
        self._inside_by: dict[str, int] = {}  # an owner's messages held or waiting
        self._reserved_by: dict[str, int] = {}  # an owner's calls taken, not yet held
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)  # notified when a message ends
        self._held_gauge = held
        self._waiting_gauge = waiting

    @property
    def held(self) -> int:
        return self._held

    def full(self, calls: int) -> list[str]:
        """The owners that could not take a message of `calls` more now: at their share of
        the threads (held or waiting), or of the calls."""
        with self._lock:
            by_threads = [
                owner
                for owner, n in self._inside_by.items()
                if self._thread_share and n >= self._thread_share
            ]
            by_calls = [
                owner
                for owner in {*self._held_by, *self._reserved_by}
                if self._held_by.get(owner, 0) + self._reserved_by.get(owner, 0) + calls
                > self._share
            ]
            return sorted({*by_threads, *by_calls})

    def wait_for_release(self, timeout_s: float) -> bool:
        """Until a message this budget holds ends (one waiting thread is woken for each: True),
        or `timeout_s` passes (False)."""
        with self._released:
            return self._released.wait(timeout_s)

    def use_threads(self, threads: int) -> None:
        """The process's pool has `threads` threads (Celery's --concurrency)."""
        with self._lock:
            self._thread_share = tenant_share(threads)

    def reserve(self, owner: str, calls: int) -> None:
        """Count a message of `calls` calls of `owner` before it holds anything (a bulk chunk
        just taken: worker/bulk_turns.py), so the next thread's `full` sees it, in the
        owner's share of the threads and of the calls; its `hold` is then given
        `reserved=True`."""
        with self._lock:
            self._inside_by[owner] = self._inside_by.get(owner, 0) + 1
            self._reserved_by[owner] = self._reserved_by.get(owner, 0) + calls

    @contextmanager
    def hold(self, calls: int, owner: str = "", reserved: bool = False) -> Iterator[None]:
        """Hold `calls` for the duration of the block, once they fit under the limit (and
        `owner`'s shares of it and of the threads); `reserved` when `reserve` counted them
        already."""
        with self._lock:
            waiter = None
            reserved = reserved and bool(owner)
            if (calls > 1 or owner) and not self._fits(calls, owner):
                # A reserved message keeps counting as reserved while it waits.
                waiter = _Waiter(calls, owner, reserved)
                self._waiters.append(waiter)
                self._show(self._waiting_gauge, 1)
            else:
                self._take(calls, owner, reserved)
            if owner and not reserved:
                self._inside_by[owner] = self._inside_by.get(owner, 0) + 1
        if waiter is not None:
            try:
                waiter.admitted.wait()
            except BaseException:
                self._abandon(waiter)
                raise
        try:
            yield
        finally:
            with self._lock:
                self._release(calls, owner)

    def _release(self, calls: int, owner: str) -> None:
        """Let go of a message's calls (the lock held), and let in the ones that fit now."""
        self._held -= calls
        self._show(self._held_gauge, -calls)
        if owner:
            self._drop(self._held_by, owner, calls)
            self._drop(self._messages_by, owner, 1)
            self._drop(self._inside_by, owner, 1)
        self._admit()
        self._released.notify()  # one thread waiting to take a chunk looks again

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiting message that ended by an error: what it holds, or its place, let go."""
        with self._lock:
            if waiter.admitted.is_set():
                self._release(waiter.calls, waiter.owner)
                return
            self._waiters.remove(waiter)
            self._show(self._waiting_gauge, -1)
            if waiter.owner:
                self._drop(self._inside_by, waiter.owner, 1)
            if waiter.reserved:
                self._drop(self._reserved_by, waiter.owner, waiter.calls)
            self._admit()
            self._released.notify()  # its place in its owner's share is free

    @staticmethod
    def _drop(counts: dict[str, int], owner: str, n: int) -> None:
        left = counts.pop(owner) - n
        if left:
            counts[owner] = left

    def _admit(self) -> None:
        """Let in the waiting messages that fit now, in arrival order: one short of room
        stops the ones behind it, one whose owner holds its share does not."""
        for waiter in list(self._waiters):
            if self._fits(waiter.calls, waiter.owner):
                self._waiters.remove(waiter)
                self._show(self._waiting_gauge, -1)
                self._take(waiter.calls, waiter.owner, waiter.reserved)
                waiter.admitted.set()
            elif not waiter.owner or not self._fits(waiter.calls, ""):
                return  # short of room: the ones behind wait their turn

    def _fits(self, calls: int, owner: str) -> bool:
        """Nothing held fits anything; else the limit, and the owner's shares (of the calls
        unless it holds none, and of the threads)."""
        if not self._held:
            return True
        if self._held + calls > self._limit:
            return False
        if not owner:
            return True
        if self._thread_share and self._messages_by.get(owner, 0) >= self._thread_share:
            return False
        held_by = self._held_by.get(owner, 0)
        return not held_by or held_by + calls <= self._share

    def _take(self, calls: int, owner: str, reserved: bool = False) -> None:
        """Hold `calls` (the lock held): a reserved message's calls move from reserved."""
        if reserved:
            self._drop(self._reserved_by, owner, calls)
        self._held += calls
        self._show(self._held_gauge, calls)
        if owner:
            self._held_by[owner] = self._held_by.get(owner, 0) + calls
            self._messages_by[owner] = self._messages_by.get(owner, 0) + 1

    @staticmethod
    def _show(gauge: Gauge | None, change: int) -> None:
        if gauge is not None:
            gauge.inc(change)


@lru_cache(maxsize=1)
def bulk_budget() -> CallBudget:
    """The process's budget: HELD_PER_CONNECTION calls per onward connection, over
    PASSTHRU_WORKER_CONCURRENCY threads (until the worker tells it its pool's size)."""
    settings = get_settings()
    limit = HELD_PER_CONNECTION * settings.max_connections
    return CallBudget(
        limit, metrics.CALLS_HELD, metrics.MESSAGES_WAITING, threads=settings.worker_concurrency
    )
