"""The interactive lane's own consumer: threads in each worker process that take the ids of
interactive calls due now off Redis, tenant after tenant (models/interactive_due.py), and
run each at once through the pipeline.

Celery's consumer costs a waiting caller several milliseconds per message: the envelope,
the task events Flower reads, the acknowledgement and the hand-off to a pool thread. Here a
thread takes the id with one script and claims the call. Delivery stays at-least-once, as
with Celery: an id taken by a worker that dies before its claim leaves the call `queued`.
Each id is moved atomically onto the process's own held list (worker/held.py) and removed
once run, so when the process dies the sweeper finds the ids it had taken and publishes
them again within seconds; the claim makes any second delivery a no-op. A take whose answer
never came may have moved an id there all the same: after one, the next take first runs
the ids on the held list that no thread of the process is running. Retries due later go
through Celery's interactive queue with a countdown, as before.

Tenants take turns, and one tenant holds at most `tenant_share(threads)` of a process's
threads at once: a tenant whose calls are slow fills its share, never the whole lane, and
the next tenant's call is taken by a free thread at once instead of waiting behind that
backlog. A tenant at its share is skipped in the turn; when only such tenants have calls
due, the waiting thread looks again when one of this process's calls ends (or after
SKIPPED_WAIT_S, for a tenant new to the turn); other processes take them meanwhile.

One free thread of a process waits for a call at a time (leader and followers): it hands
the turn to the next free thread as soon as it has an id, and runs that call itself, so no
hand-off between threads lies on a call's path. When every free thread blocked on Redis,
each asked again every POLL_S while idle: 32 Redis round trips a second per process by
default, most of an idle lane process's CPU and of Redis's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from models.interactive_due import UNKNOWN_TENANT, Due, InteractiveDue, Taken, as_text
from models.logs import Sometimes
from worker.shares import tenant_share

log = logging.getLogger("passthru.worker")

# How long a wait on Redis blocks, or a free thread waits for its turn to, before the thread
# looks whether it should stop.
POLL_S = 1
# When only tenants at their share have calls due, how long the waiting thread waits for
# one of this process's calls to end before it looks at Redis again.
SKIPPED_WAIT_S = 0.05
# After Redis failed, a thread waits this long before it tries again.
RETRY_S = 1.0
# A failing Redis is logged at most this often per process.
LOG_EVERY_S = 30.0

RunCalls = Callable[[list[str]], object]


class InteractiveConsumer:
    """`threads` threads, each taking one call due at a time and running it with `run` (the
    pipeline), so at most `threads` interactive calls of this process are in flight at once
    (at most `tenant_share(threads)` of one tenant); the rest wait in Redis, where any
    worker process may take them."""

    def __init__(
        self, connect: Callable[[], redis.Redis], run: RunCalls, threads: int, held_key: str
    ) -> None:
        self._connect = connect
        self._run = run
        self._threads = threads
        self._held_key = held_key
        self._stopping = threading.Event()
        self._listening = threading.Lock()  # held by the one thread waiting for a call
        self._share = tenant_share(threads)
        self._running: dict[str, int] = {}  # calls in flight per tenant
        self._ended = threading.Condition()  # guards _running; notified when a call ends
        self._taken: set[str] = set()  # ids taken and not ended (guarded by _ended)
        # Guarded by _listening: whether a take went unanswered since the held list was last
        # read, and the ids found there that no thread runs.
        self._unsure = False
        self._orphans: list[str] = []
        self._started: list[threading.Thread] = []
        self._warnings = Sometimes(LOG_EVERY_S)

    def start(self) -> None:
        for i in range(self._threads):
            thread = threading.Thread(
                target=self._serve, name=f"passthru-interactive-{i}", daemon=True
            )
            thread.start()
            self._started.append(thread)

    def stop(self, timeout_s: float) -> bool:
        """Take no more calls; wait up to `timeout_s` for the ones running to be stored.
        True when every thread has ended."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._started:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._started)

    def _serve(self) -> None:
        client = self._connect()
        due = InteractiveDue(client)
        try:
            while not self._stopping.is_set():
                taken = self._listen(client, due)
                if taken is not None:
                    try:
                        self._run_one(taken.call_id)
                        self._release(client, taken.call_id)
                    finally:
                        self._end(taken)
        finally:
            client.close()

    def _listen(self, client: redis.Redis, due: InteractiveDue) -> Taken | None:
        """The next call, once it is this thread's turn to wait for one (None after POLL_S
        without one). The turn passes on as soon as a call is taken, so the next free
        thread waits while this one runs the call."""
        if not self._listening.acquire(timeout=POLL_S):
            return None
        try:
            if self._stopping.is_set():
                return None
            taken = self._orphan(client) or self._next(due)
            if taken is not None:
                with self._ended:
                    self._taken.add(taken.call_id)
                    self._running[taken.tenant_id] = self._running.get(taken.tenant_id, 0) + 1
            return taken
        finally:
            self._listening.release()

    def _orphan(self, client: redis.Redis) -> Taken | None:
        """After a take whose answer never came: an id on the process's held list that no
        thread of it runs (the take moved it there all the same), taken as its tenant's is
        not known (UNKNOWN_TENANT). Redis unreachable: none yet."""
        if self._unsure:
            try:
                held = [as_text(i) for i in client.lrange(self._held_key, 0, -1)]
            except redis.RedisError:
                return None
            self._unsure = False
            with self._ended:
                self._orphans = [i for i in dict.fromkeys(held) if i not in self._taken]
        return Taken(UNKNOWN_TENANT, self._orphans.pop(0)) if self._orphans else None

    def _next(self, due: InteractiveDue) -> Taken | None:
        try:
            taken = due.take(self._held_key, self._full())
            if taken is Due.NOTHING and due.wait(POLL_S):
                taken = due.take(self._held_key, self._full())
        except redis.RedisError as exc:
            self._unsure = True
            self._warn("interactive lane: Redis unavailable (%s); retrying in %g s", exc)
            self._stopping.wait(RETRY_S)
            return None
        if isinstance(taken, Taken):
            return taken
        if taken is Due.SKIPPED:
            with self._ended:
                self._ended.wait(SKIPPED_WAIT_S)
        return None

    def _full(self) -> list[str]:
        """The tenants holding their share of this process's threads."""
        with self._ended:
            return [t for t, n in self._running.items() if n >= self._share]

    def _end(self, taken: Taken) -> None:
        with self._ended:
            self._taken.discard(taken.call_id)
            left = self._running.pop(taken.tenant_id) - 1
            if left:
                self._running[taken.tenant_id] = left
            self._ended.notify_all()

    def _release(self, client: redis.Redis, call_id: str) -> None:
        """The call is stored (or left for the sweeper): this process holds it no more."""
        try:
            client.lrem(self._held_key, 1, call_id)
        except redis.RedisError as exc:
            # A leftover id only means a harmless duplicate if this process dies.
            self._warn("interactive lane: Redis unavailable (%s); retrying in %g s", exc)

    def _run_one(self, call_id: str) -> None:
        try:
            self._run([call_id])
        except Exception:
            # The call stays as the pipeline left it; the sweeper takes it from there.
            log.exception("interactive call %s failed in the worker", call_id)

    def _warn(self, message: str, exc: Exception) -> None:
        if self._warnings.due():
            log.warning(message, exc, RETRY_S)
