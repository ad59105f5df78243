"""The sweeper (run by beat): makes sure every accepted call reaches a final state.

- calls whose publish failed, or all queued calls after Redis lost its data, are published
  again (a duplicate message is harmless: the claim lets only one run);
- calls waiting for a time (`retrying`, or `queued` and handed back to wait for a
  rate-limit slot) are published when due;
- a worker process whose heartbeat ended (worker/liveness.py) is dead: what it held and
  had not run (prefetched messages, countdowns, ids its lane popped: worker/held.py) is
  published again at once;
- `running` calls whose process is dead, or whose attempt ran past its deadline, are taken
  back: idempotent methods run again, POST and PATCH end `failed` with `outcome_unknown`,
  since the upstream may already have acted on them;
- on Postgres, the day partitions of the calls are kept created AHEAD_DAYS ahead
  (models/db/partitions.py; no query while they are known to be there).

Every query reads what is due, lost or in flight, never the whole backlog.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, update
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from models.calls.states import WAITING, CallStatus
from models.db.engine import session_scope
from models.db.partitions import keep_ahead
from models.db.tables import FunctionCall
from models.keys import QUEUE_BULK, QUEUE_INTERACTIVE
from worker import metrics
from worker.leases import recover_leases
from worker.liveness import expired, forget
from worker.runtime import Runtime
from worker.webhooks.recovery import sweep_deliveries

log = logging.getLogger("passthru.sweeper")

# Rows handled per query, so one sweep never holds a long transaction.
SWEEP_BATCH = 500
# A call just written may not be published yet; leave it alone this long.
PUBLISH_GRACE = timedelta(seconds=10)


@dataclass
class SweepReport:
    republished: int = 0
    workers_lost: int = 0
    held: int = 0  # calls a dead worker held, published again
    # Messages sent for bulk chunks that had none left (models/broker.py: top_up_bulk)
    bulk_messages: int = 0
    due: int = 0
    recovered: int = 0
    abandoned: int = 0
    webhooks: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def sweep(rt: Runtime) -> SweepReport:
    now = rt.clock()
    report = SweepReport()
    broker_lost = rt.epoch.lost()
    stale = timedelta(seconds=rt.rules.republish_after_s)
    report.republished = _republish(rt, now, everything=broker_lost, stale=stale)
    if broker_lost:
        _forget_countdowns(rt.engine, now)
        metrics.MESSAGES_REPUBLISHED.labels("broker_lost").inc(report.republished)
    else:
        metrics.MESSAGES_REPUBLISHED.labels("stale").inc(report.republished)
    report.workers_lost, report.held = _recover_dead_workers(rt, now)
    report.due = _publish_due(rt, now, stale)
    recovered, report.abandoned = recover_leases(rt, now, SWEEP_BATCH)
    report.recovered = len(recovered)
    if recovered:
        _publish(rt, recovered, now)
    report.webhooks = sweep_deliveries(rt, now, stale, everything=broker_lost, limit=SWEEP_BATCH)
    report.bulk_messages = rt.publisher.top_up_bulk()
    keep_ahead(rt.engine, now)  # logs what it creates
    if any(asdict(report).values()):
        log.info("sweep: %s", report.as_dict())
    return report


def _lane(call: FunctionCall) -> str:
    return QUEUE_BULK if call.batch_id else QUEUE_INTERACTIVE


def _publish(rt: Runtime, calls: list[FunctionCall], now: datetime) -> int:
    """Publish `calls` on their lanes, marking them published; returns how many the broker
    took."""
    published = 0
    tenant_of = {c.id: c.tenant_id for c in calls}
    for lane in (QUEUE_INTERACTIVE, QUEUE_BULK):
        ids = [c.id for c in calls if _lane(c) == lane]
        if ids and rt.publisher.publish_calls(ids, lane, tenant_of=tenant_of):
            published += len(ids)
            with session_scope(rt.engine) as session:
                session.exec(
                    update(FunctionCall)
                    .where(col(FunctionCall.id).in_(ids))
                    .values(published_at=now)
                )
    return published


def _recover_dead_workers(rt: Runtime, now: datetime) -> tuple[int, int]:
    """Processes whose heartbeat ended: what each held and had not run is published again
    now (due later: left unpublished, so `_publish_due` publishes it when due), then the
    process is forgotten; its running calls are taken back by `recover_leases`. Returns
    the processes and the calls published again."""
    dead = expired(rt.engine, now, SWEEP_BATCH)
    lost: list[str] = []
    published = 0
    for worker_id in dead:
        held = rt.holds.take(worker_id)
        if held is None:
            continue  # Redis is away: the next sweep tries again
        log.warning(
            "worker %s stopped renewing its lease; %d call(s) it held", worker_id, len(held)
        )
        published += _republish_held(rt, held, now)
        lost.append(worker_id)
    forget(rt.engine, lost, now)
    metrics.WORKERS_LOST.inc(len(lost))
    metrics.MESSAGES_REPUBLISHED.labels("worker_lost").inc(published)
    return len(lost), published


def _republish_held(rt: Runtime, call_ids: list[str], now: datetime) -> int:
    waiting = col(FunctionCall.status).in_(WAITING)
    published = 0
    for start in range(0, len(call_ids), SWEEP_BATCH):
        ids = col(FunctionCall.id).in_(call_ids[start : start + SWEEP_BATCH])
        due = or_(
            col(FunctionCall.next_attempt_at).is_(None), col(FunctionCall.next_attempt_at) <= now
        )
        with session_scope(rt.engine) as session:
            page = list(session.exec(select(FunctionCall).where(ids, waiting, due)))
            session.exec(
                update(FunctionCall)
                .where(ids, waiting, col(FunctionCall.next_attempt_at) > now)
                .values(published_at=None)
            )
        published += _publish(rt, page, now) if page else 0
    return published


def _republish(rt: Runtime, now: datetime, *, everything: bool, stale: timedelta) -> int:
    """Calls whose publish failed or whose message has not been claimed for `stale` (lost
    some way other than with a dead worker); after Redis lost its data, every waiting call.

    The first two are read through ix_call_status_published, each as its own range (an OR
    of them, or an order by id, would read the whole backlog), until a page comes back
    short: a sweep costs the same with 200,000 calls queued as with none."""
    grace = col(FunctionCall.created_at) <= now - PUBLISH_GRACE
    if everything:
        due = or_(
            col(FunctionCall.next_attempt_at).is_(None), col(FunctionCall.next_attempt_at) <= now
        )
        waiting = select(FunctionCall).where(col(FunctionCall.status).in_(WAITING), due, grace)
        return _republish_all(rt, waiting, now)
    unclaimed = select(FunctionCall).where(
        col(FunctionCall.status) == CallStatus.QUEUED,
        col(FunctionCall.next_attempt_at).is_(None),
        grace,
    )
    never = unclaimed.where(col(FunctionCall.published_at).is_(None))
    old = unclaimed.where(col(FunctionCall.published_at) < now - stale)
    total = 0
    for query in (
        never.order_by(col(FunctionCall.id)),
        old.order_by(col(FunctionCall.published_at)),
    ):
        while True:
            with session_scope(rt.engine) as session:
                page = list(session.exec(query.limit(SWEEP_BATCH)))
            published = _publish(rt, page, now) if page else 0
            total += published
            # A published call leaves the range (published_at is now); a short page, or a
            # broker that refused, ends it until the next sweep.
            if len(page) < SWEEP_BATCH or published < len(page):
                break
    return total


def _republish_all(rt: Runtime, query: SelectOfScalar[FunctionCall], now: datetime) -> int:
    total = 0
    after = ""
    while True:
        with session_scope(rt.engine) as session:
            page = list(
                session.exec(
                    query.where(col(FunctionCall.id) > after)
                    .order_by(col(FunctionCall.id))
                    .limit(SWEEP_BATCH)
                )
            )
        if not page:
            return total
        total += _publish(rt, page, now)
        after = page[-1].id


def _publish_due(rt: Runtime, now: datetime, stale: timedelta) -> int:
    """Waiting calls that are due and not yet published for this time, or whose countdown
    message was lost (held by a worker that died, or in a Redis that restarted)."""
    with session_scope(rt.engine) as session:
        due = list(
            session.exec(
                select(FunctionCall)
                .where(
                    col(FunctionCall.status).in_(WAITING),
                    col(FunctionCall.next_attempt_at) <= now,
                    or_(
                        col(FunctionCall.published_at).is_(None),
                        col(FunctionCall.published_at) < col(FunctionCall.next_attempt_at),
                        (col(FunctionCall.next_attempt_at) < now - stale)
                        & (col(FunctionCall.published_at) < now - stale),
                    ),
                )
                .limit(SWEEP_BATCH)
            )
        )
    return _publish(rt, due, now) if due else 0


def _forget_countdowns(engine: Engine, now: datetime) -> None:
    """After Redis lost its data, calls waiting on a countdown message have none: mark them
    unpublished so they are published when due."""
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(
                col(FunctionCall.status).in_(WAITING),
                col(FunctionCall.next_attempt_at) > now,
            )
            .values(published_at=None)
        )
