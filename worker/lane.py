"""The interactive lane's own consumer: threads in each worker process that take the ids of
interactive calls due now off a plain Redis list (LIST_INTERACTIVE, BLMOVE) and run each at
once through the pipeline.

Celery's consumer costs a waiting caller several milliseconds per message: the envelope,
the task events Flower reads, the acknowledgement and the hand-off to a pool thread. Here a
thread blocked in BLMOVE wakes with the id and claims the call. Delivery stays
at-least-once, as with Celery: an id popped by a worker that dies before its claim leaves
the call `queued`. Each id is moved atomically (BLMOVE) onto the process's own held list
(worker/held.py) and removed once run, so when the process dies the sweeper finds the ids
it had popped and publishes them again within seconds; the claim makes any second delivery
a no-op. Retries due later go through Celery's
interactive queue with a countdown, as before.

One free thread of a process waits on the list at a time (leader and followers): it hands
the turn to the next free thread as soon as it has an id, and runs that call itself, so no
hand-off between threads lies on a call's path. When every free thread blocked on the
list, each sent its BLMOVE again every POLL_S while idle: 32 Redis round trips a second
per process by default, most of an idle lane process's CPU and of Redis's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from models.keys import LIST_INTERACTIVE
from models.logs import Sometimes

log = logging.getLogger("passthru.worker")

# How long a BLMOVE blocks, or a free thread waits for its turn to, before the thread looks
# whether it should stop.
POLL_S = 1
# After Redis failed, a thread waits this long before it tries again.
RETRY_S = 1.0
# A failing Redis is logged at most this often per process.
LOG_EVERY_S = 30.0

RunCalls = Callable[[list[str]], object]


class InteractiveConsumer:
    """`threads` threads, each taking one call at a time off LIST_INTERACTIVE and running it
    with `run` (the pipeline), so at most `threads` interactive calls of this process are
    in flight at once; the rest wait on the list, where any worker process may take them."""

    def __init__(
        self, connect: Callable[[], redis.Redis], run: RunCalls, threads: int, held_key: str
    ) -> None:
        self._connect = connect
        self._run = run
        self._threads = threads
        self._held_key = held_key
        self._stopping = threading.Event()
        self._listening = threading.Lock()  # held by the one thread waiting on the list
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
        try:
            while not self._stopping.is_set():
                call_id = self._listen(client)
                if call_id is not None:
                    self._run_one(call_id)
                    self._release(client, call_id)
        finally:
            client.close()

    def _listen(self, client: redis.Redis) -> str | None:
        """The next id, once it is this thread's turn to wait on the list (None after
        POLL_S without one). The turn passes on as soon as an id is popped, so the next
        free thread waits while this one runs the call."""
        if not self._listening.acquire(timeout=POLL_S):
            return None
        try:
            return None if self._stopping.is_set() else self._next(client)
        finally:
            self._listening.release()

    def _next(self, client: redis.Redis) -> str | None:
        try:
            popped = client.blmove(LIST_INTERACTIVE, self._held_key, POLL_S, "LEFT", "RIGHT")
        except redis.RedisError as exc:
            self._warn("interactive lane: Redis unavailable (%s); retrying in %g s", exc)
            self._stopping.wait(RETRY_S)
            return None
        if popped is None:
            return None
        return popped.decode() if isinstance(popped, bytes) else str(popped)

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
