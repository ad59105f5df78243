"""Which chunk of the bulk lane a Celery thread runs: the next tenant's oldest, in turn
(models/interactive_due.py: BulkDue), skipping the tenants that hold their share of this
process already (worker/budget.py), so one tenant's backlog never stands in front of another
tenant's batch, on any shard, and never holds every thread.

The message that asked carries no ids. The chunk taken becomes that message's entry in the
process's hash of held messages (worker/held.py) in the same script, so the sweeper
publishes it again if the process dies, and Celery's `task_postrun` lets it go
(worker/app.py). When only tenants at their share have chunks due, the thread waits for one
of this process's messages to end (each end wakes one such thread) and looks again; one of
the waiting threads at a time also looks every SKIPPED_WAIT_S, for another tenant's chunk."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache

import redis

from models.broker import VISIBILITY_TIMEOUT_S
from models.interactive_due import BulkDue, Due, Taken
from models.keys import BULK_CHUNK
from models.settings import get_settings
from worker.budget import CallBudget, bulk_budget
from worker.held import messages_key
from worker.liveness import this_process

log = logging.getLogger("passthru.worker")

# How long the one thread that looks for other tenants' chunks, while only tenants at their
# share have chunks due, waits before it looks again, unless one of the process's messages
# ends first: at most this long, a tenant's new chunk waits for a process whose threads all
# wait so. The other such threads look again when a message ends, or after IDLE_WAIT_S.
# Each look is a script call in Redis; more of them cost the interactive lane beside a
# drain (docs/performance.md: four a second per thread raised (e)'s p99 from 85 to 147 ms).
SKIPPED_WAIT_S = 1.0
IDLE_WAIT_S = 5.0


@dataclass(frozen=True)
class Chunk:
    tenant_id: str
    call_ids: list[str]


class BulkTurns:
    def __init__(self, due: BulkDue, budget: CallBudget, held_key: str) -> None:
        self._due = due
        self._budget = budget
        self._held_key = held_key
        self._looking = threading.Lock()  # held by the one waiting thread that polls
        # Held from the shares read to the chunk counted, so two threads never both take a
        # chunk of a tenant one short of its share.
        self._taking = threading.Lock()

    def take(self, message_id: str) -> Chunk | None:
        """The chunk for message `message_id`, counted in the budget as its tenant's
        (`CallBudget.reserve`: hold it with `reserved=True`); None when no chunk is due
        (another message took it), or Redis cannot be reached (the sweeper sends another
        message for it)."""
        while True:
            try:
                with self._taking:
                    found = self._due.take(
                        self._held_key,
                        self._budget.full(BULK_CHUNK),
                        field=message_id,
                        expire_s=VISIBILITY_TIMEOUT_S,
                    )
                    if isinstance(found, Taken):
                        self._budget.reserve(found.tenant_id)
            except redis.RedisError as exc:
                log.warning("bulk lane: Redis unavailable (%s); the sweeper sends again", exc)
                return None
            if isinstance(found, Taken):
                return Chunk(found.tenant_id, [i for i in found.call_id.split(",") if i])
            if found is Due.NOTHING:
                return None
            self._wait_a_turn()

    def _wait_a_turn(self) -> None:
        """Until a message of the process ends; the one thread that looks for other tenants'
        chunks also after SKIPPED_WAIT_S, the others after IDLE_WAIT_S."""
        if self._looking.acquire(blocking=False):
            try:
                self._budget.wait_for_release(SKIPPED_WAIT_S)
            finally:
                self._looking.release()
        else:
            self._budget.wait_for_release(IDLE_WAIT_S)


@lru_cache(maxsize=1)
def bulk_turns() -> BulkTurns:
    """The process's: its budget, and its own hash of held messages."""
    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)
    return BulkTurns(BulkDue(client), bulk_budget(), messages_key(this_process().id))
