"""Bulk work yields to interactive calls: for a moment after each interactive call is
published, a worker's bulk messages claim nothing, store nothing and start no new request
(requests already on the wire go on).

Lower CPU priority alone does not give a waiting caller the machine: most of what a bulk
drain costs is spent outside the worker's niced threads (Postgres storing its results, the
upstream, Redis), all at the normal priority, and each hop of an interactive call waits its
turn among them. Pausing the drain's next steps frees all of those at once.

The API announces each interactive call due now on CHANNEL_INTERACTIVE_DUE, in the same
round trip as the call's id (models/broker.py); every worker process hears it on one
subscription (`YieldListener`), which also stops the bulk sender's event loop for the hold
(`Sender.hold_loop`): most of a drain's CPU is that loop reading answers, and a pause
checked only between steps (claim, store) would come too rarely to matter. The policy
(`YieldGate`) is pure, with an injected clock: each announcement holds bulk back for
HOLD_S; a hold that has lasted MAX_CLOSED_S opens for OPEN_S whatever comes, so
interactive traffic never starves a drain (bulk keeps at least
OPEN_S / (MAX_CLOSED_S + OPEN_S) of the time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from models.keys import CHANNEL_INTERACTIVE_DUE

log = logging.getLogger("passthru.worker")

# How long one interactive call holds bulk back: its path from the insert to the answer
# (claim, exchange, store, notice) on a machine with nothing else to do.
HOLD_S = 0.03
# The longest bulk is held back in one go, and how long it then runs whatever comes.
MAX_CLOSED_S = 0.25
OPEN_S = 0.1
# After the subscription failed, how long before it is made again.
RETRY_S = 1.0


class YieldGate:
    """When bulk work may go on. Thread-safe enough without a lock: each method reads and
    writes a few floats, and a race only moves a pause by one announcement."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0  # bulk is held back until then
        self._closed_since = 0.0  # the current hold began then
        self._open_until = 0.0  # the break after a hold that reached its cap ends then

    def announce(self) -> None:
        """An interactive call was published."""
        now = self._clock()
        if now < self._open_until:
            return  # the hold is at its cap, or in the break after it
        if now >= self._until:
            self._closed_since = now
        cap = self._closed_since + MAX_CLOSED_S
        self._until = min(now + HOLD_S, cap)
        if self._until >= cap:
            self._open_until = cap + OPEN_S

    def held_for(self) -> float:
        """Seconds bulk work should still wait (0: go on; under a microsecond is nothing)."""
        left = self._until - self._clock()
        return left if left > 1e-6 else 0.0

    def wait(self, sleep: Callable[[float], object] = time.sleep) -> float:
        """Block the calling (bulk) thread while the gate holds; the seconds waited."""
        waited = 0.0
        while (left := self.held_for()) > 0 and waited < MAX_CLOSED_S:
            sleep(left)
            waited += left
        return waited


class NeverHeld(YieldGate):
    """For the interactive lane and tests: nothing holds it back."""

    def announce(self) -> None:
        return

    def held_for(self) -> float:
        return 0.0


class YieldListener:
    """One thread per worker process: every announcement on CHANNEL_INTERACTIVE_DUE reaches
    the process's gate. Without Redis there are no announcements either: bulk goes on."""

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        gate: YieldGate,
        on_hold: Callable[[], object] = lambda: None,
    ) -> None:
        self._connect = connect
        self._gate = gate
        self._on_hold = on_hold

    def start(self) -> None:
        threading.Thread(target=self._run, name="passthru-bulk-yield", daemon=True).start()

    def _run(self) -> None:
        while True:
            client = self._connect()
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(CHANNEL_INTERACTIVE_DUE)
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._gate.announce()
                        if self._gate.held_for() > 0:
                            self._on_hold()
            except (redis.RedisError, OSError) as exc:
                log.debug("bulk yield: subscription lost (%s); again in %g s", exc, RETRY_S)
                time.sleep(RETRY_S)
            finally:
                client.close()
