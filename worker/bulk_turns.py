"""Which chunk of the bulk lane a Celery thread runs: the next tenant's oldest, in turn
(models/interactive_due.py: BulkDue), skipping the tenants that hold their share of this
process already (worker/budget.py), so one tenant's backlog never stands in front of another
tenant's batch and never holds every thread.

The message that asked carries no ids. The chunk taken becomes that message's entry in the
process's hash of held messages (worker/held.py) in the same script, so the sweeper
publishes it again if the process dies, and Celery's `task_postrun` lets it go
(worker/app.py). A take sent again under the same message takes nothing more (the script
returns the entry already set), so the client may retry it; when its answer never comes,
the message's entry is kept and put back in its tenant's turn by the process's next take.

When only tenants at their share have chunks due, the thread waits for one of this
process's messages to end (each end wakes one waiting thread) and looks again; one of the
waiting threads at a time also looks every SKIPPED_WAIT_S, for another tenant's chunk.
Meanwhile every waiting thread asks every LOOK_EVERY_S whether messages wait in Redis for a
free thread (worker/waiting_work.py), and gives its message back (`HandBack`) for each one
that does, or when the worker is stopping: it holds no chunk, and its thread is what takes
the next message.

Bulk messages that carry ids (a countdown's, or an older API's) are put in their tenants'
turn when they arrive (`put_in_turn`), never run in the order they were sent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis
from celery.worker import state as celery_state
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from models.broker import VISIBILITY_TIMEOUT_S, Publisher
from models.db.engine import read_connection
from models.db.tables import FunctionCall
from models.interactive_due import BulkDue, Due, Taken
from models.keys import BULK_CHUNK, QUEUE_BULK
from models.settings import get_settings
from worker.budget import CallBudget, bulk_budget
from worker.calls.store import HANDED_BACK, publish_or_forget
from worker.held import messages_key
from worker.liveness import this_process
from worker.waiting_work import READ_EVERY_S, waiting_work

log = logging.getLogger("passthru.worker")

# How long the one thread that looks for other tenants' chunks, while only tenants at their
# share have chunks due, waits before it looks again, unless one of the process's messages
# ends first: at most this long, a tenant's new chunk waits for a process whose threads all
# wait so. The other such threads look again when a message ends, or after IDLE_WAIT_S.
# Each look is a script call in Redis; more of them cost the interactive lane beside a
# drain (docs/performance.md: four a second per thread raised (e)'s p99 from 85 to 147 ms).
SKIPPED_WAIT_S = 1.0
IDLE_WAIT_S = 5.0
# How often a waiting thread asks whether other messages wait for a thread (one read of the
# queues' lengths per period for the whole process).
LOOK_EVERY_S = READ_EVERY_S
# How long a thread waits for another's take (one at a time per process) before it gives its
# message back (a Redis that does not answer).
TAKE_WAIT_S = 10.0
# After a take that got no answer, the pauses before each try to put its chunk back in turn.
SETTLE_PAUSES_S = (0.5, 1.0, 2.0)


class HandBack(Exception):
    """This message waits for a turn, holding nothing, while other messages wait in Redis
    for a thread (or the worker is stopping): give it back to its queue."""


@dataclass(frozen=True)
class Chunk:
    tenant_id: str
    call_ids: list[str]


class BulkTurns:
    def __init__(
        self,
        due: BulkDue,
        budget: CallBudget,
        held_key: str,
        other_work: Callable[[], bool] = lambda: False,
        stopping: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        settle_pauses_s: Sequence[float] = SETTLE_PAUSES_S,
        take_wait_s: float = TAKE_WAIT_S,
    ) -> None:
        self._due = due
        self._budget = budget
        self._held_key = held_key
        self._other_work = other_work
        self._stopping = stopping
        self._clock = clock
        self._settle_pauses_s = settle_pauses_s
        self._take_wait_s = take_wait_s
        self._looking = threading.Lock()  # held by the one waiting thread that polls
        # Held from the shares read to the chunk counted, so two threads never both take a
        # chunk of a tenant one short of its share.
        self._taking = threading.Lock()
        # Messages whose take got no answer, oldest first: their entries may hold a chunk,
        # which goes back in turn at the next take (guarded by _taking).
        self._unsure: dict[str, None] = {}

    def take(self, message_id: str) -> Chunk | None:
        """The chunk for message `message_id`, counted in the budget as its tenant's
        (`CallBudget.reserve`: hold it with `reserved=True`); None when no chunk is due
        (another message took it), or Redis did not answer for long (`keeps` then says the
        message's entry must stay). HandBack when it should go back to its queue: it waited
        for a turn while other work waited, the worker is stopping, or its take's chunk went
        back in turn."""
        while True:
            if self._stopping():
                raise HandBack("the worker is stopping")
            if not self._taking.acquire(timeout=self._take_wait_s):
                raise HandBack(f"no take of this process answered in {self._take_wait_s:g} s")
            try:
                found = self._take(message_id)
            except redis.RedisError as exc:
                self._unsure[message_id] = None
                log.warning("bulk lane: a take got no answer (%s)", exc)
                found = None
            finally:
                self._taking.release()
            if found is None:
                return self._settle()
            if isinstance(found, Chunk):
                return found
            if found is Due.NOTHING:
                return None
            self._wait_a_turn()

    def keeps(self, message_id: str) -> bool:
        """Whether the message's entry among the held ones must outlive it: its take got no
        answer, so it may hold a chunk nobody ran."""
        return message_id in self._unsure

    def _take(self, message_id: str) -> Chunk | Due:
        """One take, with `_taking` held: first the chunks of takes that got no answer back
        in turn, then the next chunk, counted at once."""
        self._give_back()
        found = self._due.take(
            self._held_key,
            self._budget.full(BULK_CHUNK),
            field=message_id,
            expire_s=VISIBILITY_TIMEOUT_S,
        )
        if not isinstance(found, Taken):
            return found
        chunk = Chunk(found.tenant_id, [i for i in found.call_id.split(",") if i])
        self._budget.reserve(chunk.tenant_id, len(chunk.call_ids))
        return chunk

    def _give_back(self) -> None:
        """The chunks of takes that got no answer back at the head of their tenants' lists,
        the oldest first (`_taking` held)."""
        if self._unsure:
            self._due.give_back(self._held_key, list(reversed(self._unsure)))
            self._unsure.clear()

    def _settle(self) -> Chunk | None:
        """After a take that got no answer: its chunk (if it took one) back in turn as soon
        as Redis answers, and the message with it (HandBack), so the chunk keeps a message;
        None when Redis stays away (the next take, or the sweeper, sees to it)."""
        for pause in self._settle_pauses_s:
            time.sleep(pause)
            if self._stopping() or not self._taking.acquire(timeout=self._take_wait_s):
                return None
            try:
                self._give_back()
            except redis.RedisError:
                continue
            finally:
                self._taking.release()
            raise HandBack("its take got no answer; its chunk is back in turn")
        return None

    def _wait_a_turn(self) -> None:
        """Until a message of the process ends; the one thread that looks for other tenants'
        chunks also after SKIPPED_WAIT_S, the others after IDLE_WAIT_S. HandBack when other
        work waits for a thread meanwhile, or the worker is stopping."""
        looking = self._looking.acquire(blocking=False)
        try:
            until = self._clock() + (SKIPPED_WAIT_S if looking else IDLE_WAIT_S)
            while True:
                if self._stopping():
                    raise HandBack("the worker is stopping")
                if self._other_work():
                    raise HandBack("other messages wait for a thread")
                left = until - self._clock()
                if left <= 0 or self._budget.wait_for_release(min(LOOK_EVERY_S, left)):
                    return
        finally:
            if looking:
                self._looking.release()


def put_in_turn(engine: Engine, publisher: Publisher, call_ids: Sequence[str]) -> None:
    """A bulk message's own ids (a countdown's, or an older API process's) onto their
    tenants' lists, in turn with every other chunk (those already ended left out), at their
    heads: these calls had their turn already (a retry, a rate limit's come-back). Their
    tenants are read from the database; when it is away, they go in turn as one tenant's
    (the unknown one's), and when Redis is, they are marked for the sweeper."""
    tenant_of: dict[str, str] = {}
    calls = FunctionCall.__table__  # type: ignore[attr-defined]
    try:
        with read_connection(engine) as conn:
            rows = conn.execute(
                select(calls.c.id, calls.c.tenant_id).where(
                    calls.c.id.in_(list(call_ids)), calls.c.status.in_(HANDED_BACK)
                )
            ).all()
        call_ids, tenant_of = [r.id for r in rows], {r.id: r.tenant_id for r in rows}
    except SQLAlchemyError as exc:
        log.warning("bulk lane: tenants of %d call(s) not read (%s)", len(call_ids), exc)
    publish_or_forget(engine, publisher, call_ids, QUEUE_BULK, 0.0, tenant_of, first=True)


def _stopping() -> bool:
    """Whether the worker is shutting down (Celery sets these to an exit code, 0 included)."""
    return any(flag is not None and flag is not False for flag in _stop_flags())


def _stop_flags() -> tuple[object, object]:
    return celery_state.should_stop, celery_state.should_terminate


@lru_cache(maxsize=1)
def bulk_turns() -> BulkTurns:
    """The process's: its budget, its own hash of held messages, the queues' lengths."""
    client = redis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=2,
        socket_connect_timeout=2,
        # The take is safe to send again (above); a second try rides out a blip.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
    )
    return BulkTurns(
        BulkDue(client),
        bulk_budget(),
        messages_key(this_process().id),
        other_work=lambda: waiting_work().claim(QUEUE_BULK),
        stopping=_stopping,
    )
