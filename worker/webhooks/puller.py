"""A worker process's webhook sender takes the deliveries due now off their tenants' lists
(models/webhooks/due.py) whenever it has room, from a thread of its own.

The thread waits on the sender, not on Redis, while the sender is full: for one of its
attempts to end. It skips the tenants the sender is full for, so a tenant whose receiver
is slow never holds the others' events back, and waits on Redis (a blocking read of the
tenants in turn) only when nothing is due. A delivery is claimed and handed over as soon
as it is taken (worker/webhooks/deliveries.py: `deliver`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

import redis
from sqlalchemy.exc import SQLAlchemyError

from models.interactive_due import UNKNOWN_TENANT, Due, Taken
from models.logs import Sometimes
from models.webhooks.due import DeliveriesDue
from worker.priority import run_in_background
from worker.webhooks.sender import Poster

log = logging.getLogger("passthru.webhooks")

# How long the thread waits at most, on Redis or on the sender, before it looks again (and
# sees that it is asked to stop). Whole seconds: Redis' blocking reads count in them.
LOOK_EVERY_S = 1
# After Redis or the database failed, the thread waits this long before it tries again.
PAUSE_AFTER_ERROR_S = 1.0
_ERROR_WARNINGS = Sometimes(30.0)

# Claims and hands over deliveries: `deliver`, with the tenant of each when known.
Deliver = Callable[[Sequence[str], "Mapping[str, str] | None"], object]


class Puller:
    """Takes deliveries due for `poster` whenever it has room, and hands them to `deliver`."""

    def __init__(self, due: DeliveriesDue, poster: Poster, deliver: Deliver) -> None:
        self._due = due
        self._poster = poster
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _hand_over(self, taken: Taken) -> None:
        if taken.tenant_id == UNKNOWN_TENANT:  # their tenants are read, then
            self._deliver(taken.call_id.split(","), None)
        else:
            self._deliver([taken.call_id], {taken.call_id: taken.tenant_id})

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="passthru-webhook-pull", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Take nothing more; return once the thread has ended (True), or after `timeout_s`
        (False: it may still hand over the delivery it took)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                return False
        self._due.close()
        return True

    def run(self) -> None:
        run_in_background()  # behind the interactive lane, as Celery's threads are
        while not self._stop.is_set():
            try:
                self.step()
            except (redis.RedisError, SQLAlchemyError) as exc:
                (log.warning if _ERROR_WARNINGS.due() else log.debug)(
                    "webhook deliveries could not be taken (%s: %s); trying again",
                    type(exc).__name__,
                    exc,
                )
                self._stop.wait(PAUSE_AFTER_ERROR_S)
            except Exception:  # never let the thread end: this process would send no more
                log.exception("webhook deliveries: the puller failed; trying again")
                self._stop.wait(PAUSE_AFTER_ERROR_S)

    def step(self) -> None:
        """Take and hand over one delivery if the sender has room for it; else wait, for
        room or for a delivery, LOOK_EVERY_S at most."""
        room = self._poster.vacancy()
        if not room.any:
            self._poster.wait_for_room(room.ended, LOOK_EVERY_S)
            return
        found = self._due.take_one(room.full)
        if isinstance(found, Taken):
            try:
                self._hand_over(found)
            except BaseException:
                self._due.put_back(found)  # (if Redis lets us: else the sweeper publishes it)
                raise
        elif found is Due.SKIPPED:
            self._poster.wait_for_room(room.ended, LOOK_EVERY_S)
        else:
            self._due.wait(LOOK_EVERY_S)
