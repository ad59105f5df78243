"""The sweeper (run by beat): makes sure every accepted call reaches a final state.

- calls whose publish failed, or all queued calls after Redis lost its data, are published
  again (a duplicate message is harmless: the claim lets only one run);
- calls waiting for a time (`retrying`, or `queued` and handed back to wait for a
  rate-limit slot) are published when due;
- `running` calls whose lease expired (their worker died) are taken back: idempotent
  methods run again, POST and PATCH end `failed` with `outcome_unknown`, since the
  upstream may already have acted on them.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import Engine, or_, update
from sqlmodel import col, select

from models.calls.states import CALLS, WAITING, CallStatus
from models.catalog.apps import RetrySpec
from models.db.engine import session_scope
from models.db.tables import CallAttempt, FunctionCall, WebhookDelivery
from models.keys import KEY_BROKER_EPOCH, QUEUE_BULK, QUEUE_INTERACTIVE
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.states import DELIVERIES, DeliveryStatus
from worker.publish import publish_calls, publish_deliveries
from worker.retry import NON_IDEMPOTENT, policy_for
from worker.runtime import Runtime

log = logging.getLogger("passthru.sweeper")

# Rows handled per query, so one sweep never holds a long transaction.
SWEEP_BATCH = 500
# A call just written may not be published yet; leave it alone this long.
PUBLISH_GRACE = timedelta(seconds=10)


@dataclass
class SweepReport:
    republished: int = 0
    due: int = 0
    recovered: int = 0
    abandoned: int = 0
    webhooks: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def sweep(rt: Runtime, redis_client: redis.Redis | None = None) -> SweepReport:
    from models.settings import get_settings

    client = redis_client or redis.Redis.from_url(get_settings().redis_url)
    now = rt.clock()
    report = SweepReport()
    broker_lost = client.set(KEY_BROKER_EPOCH, secrets.token_hex(8), nx=True) is True
    stale = timedelta(seconds=get_settings().republish_after_s)
    report.republished = _republish(rt.engine, now, everything=broker_lost, stale=stale)
    if broker_lost:
        _forget_countdowns(rt.engine, now)
    report.due = _publish_due(rt.engine, now, stale)
    report.recovered, report.abandoned = _recover_leases(rt, now)
    report.webhooks = _sweep_deliveries(
        rt.engine,
        now,
        stale,
        everything=broker_lost,
        max_attempts=len(get_settings().webhook_schedule),
    )
    if any(asdict(report).values()):
        log.info("sweep: %s", report.as_dict())
    return report


def _lane(call: FunctionCall) -> str:
    return QUEUE_BULK if call.batch_id else QUEUE_INTERACTIVE


def _publish(engine: Engine, calls: list[FunctionCall], now: datetime) -> int:
    for lane in (QUEUE_INTERACTIVE, QUEUE_BULK):
        ids = [c.id for c in calls if _lane(c) == lane]
        if ids and publish_calls(ids, lane):
            with session_scope(engine) as session:
                session.exec(
                    update(FunctionCall)
                    .where(col(FunctionCall.id).in_(ids))
                    .values(published_at=now)
                )
    return len(calls)


def _republish(engine: Engine, now: datetime, *, everything: bool, stale: timedelta) -> int:
    """Calls whose publish failed or whose message has not been claimed for `stale` (it
    was prefetched by a worker that died); after Redis lost its data, every waiting call."""
    due = or_(col(FunctionCall.next_attempt_at).is_(None), col(FunctionCall.next_attempt_at) <= now)
    if everything:
        query = select(FunctionCall).where(
            col(FunctionCall.status).in_(WAITING),
            due,
            col(FunctionCall.created_at) <= now - PUBLISH_GRACE,
        )
    else:
        query = select(FunctionCall).where(
            col(FunctionCall.status) == CallStatus.QUEUED,
            col(FunctionCall.next_attempt_at).is_(None),
            col(FunctionCall.created_at) <= now - PUBLISH_GRACE,
            or_(
                col(FunctionCall.published_at).is_(None),
                col(FunctionCall.published_at) < now - stale,
            ),
        )
    total = 0
    after = ""
    while True:
        with session_scope(engine) as session:
            page = list(
                session.exec(
                    query.where(col(FunctionCall.id) > after)
                    .order_by(col(FunctionCall.id))
                    .limit(SWEEP_BATCH)
                )
            )
        if not page:
            return total
        total += _publish(engine, page, now)
        after = page[-1].id


def _publish_due(engine: Engine, now: datetime, stale: timedelta) -> int:
    """Waiting calls that are due and not yet published for this time, or whose countdown
    message was lost (held by a worker that died, or in a Redis that restarted)."""
    with session_scope(engine) as session:
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
    return _publish(engine, due, now) if due else 0


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


def _attempts_allowed(rt: Runtime, call: FunctionCall) -> int:
    """The call's own max_attempts, layered as its retries are (operator, app, call)."""
    app = rt.catalog.get(call.app)
    retry = (call.options or {}).get("retry")
    return policy_for(
        rt.rules.retry_policy,
        app.retry if app else RetrySpec(),
        retry if isinstance(retry, dict) else None,
    ).max_attempts


def _recover_leases(rt: Runtime, now: datetime) -> tuple[int, int]:
    """Calls whose worker stopped: taken back to run again when that is safe and attempts
    are left; else ended, so a call that stops its worker every time cannot loop."""
    recovered: list[FunctionCall] = []
    abandoned = 0
    for call in _expired(rt.engine, now):
        verdict = _verdict(rt, call)
        if not _take_back(rt.engine, call, verdict, now):
            continue
        if verdict.again:
            recovered.append(call)
        else:
            abandoned += 1
    if recovered:
        _publish(rt.engine, recovered, now)
    return len(recovered), abandoned


def _expired(engine: Engine, now: datetime) -> list[FunctionCall]:
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(FunctionCall)
                .where(
                    col(FunctionCall.status) == CallStatus.RUNNING,
                    col(FunctionCall.lease_expires_at) < now,
                )
                .limit(SWEEP_BATCH)
            )
        )


@dataclass(frozen=True)
class _Verdict:
    """What becomes of a call whose lease expired: run `again`, or end with `error`."""

    again: bool
    error: str
    why: str

    @property
    def target(self) -> CallStatus:
        return CallStatus.RETRYING if self.again else CallStatus.FAILED


def _verdict(rt: Runtime, call: FunctionCall) -> _Verdict:
    safe = call.method not in NON_IDEMPOTENT or call.idempotency_key is not None
    if not safe:
        return _Verdict(
            False,
            "outcome_unknown",
            "the worker running this call stopped; the upstream may have received it, so "
            "it was not sent again",
        )
    spent = call.attempt_count >= _attempts_allowed(rt, call)
    return _Verdict(
        not spent,
        "lease_expired",
        f"the worker running this call stopped on each of its {call.attempt_count} attempts",
    )


def _take_back(engine: Engine, call: FunctionCall, verdict: _Verdict, now: datetime) -> bool:
    """Move the call from `running` on the attempt its worker claimed, and record that
    attempt as lost; False if it is no longer there (it was recorded meanwhile)."""
    again = verdict.again
    with session_scope(engine) as session:
        taken = session.exec(
            CALLS.update(
                FunctionCall,
                verdict.target,
                col(FunctionCall.id) == call.id,
                col(FunctionCall.attempt_count) == call.attempt_count,
                current=CallStatus.RUNNING,
            ).values(
                lease_expires_at=None,
                next_attempt_at=now if again else None,
                finished_at=None if again else now,
                error=None if again else verdict.error,
                error_message=None if again else verdict.why,
            )
        ).rowcount
        if taken != 1:
            return False
        if not again:
            enqueue_deliveries(session.connection(), [call.id], now, published=False)
        session.add(
            CallAttempt(
                call_id=call.id,
                number=call.attempt_count,
                started_at=call.started_at or now,
                duration_ms=0,
                error="lease_expired",
                error_message="the worker running this call stopped before recording it",
                decision="retry now: idempotent" if again else f"give up: {verdict.error}",
            )
        )
    return True


def _sweep_deliveries(
    engine: Engine, now: datetime, stale: timedelta, *, everything: bool, max_attempts: int
) -> int:
    """Webhook deliveries: take back those whose worker died mid-attempt (or end them, once
    they have used every attempt of the schedule: a delivery that kills its worker must not
    loop), and publish those due that have no message (a publish lost, a retry due later
    than a countdown, or every pending one after Redis lost its data)."""
    with session_scope(engine) as session:
        lost = col(WebhookDelivery.lease_expires_at) < now
        session.exec(
            DELIVERIES.update(
                WebhookDelivery,
                DeliveryStatus.FAILED,
                lost,
                col(WebhookDelivery.attempt_count) >= max_attempts,
                current=DeliveryStatus.DELIVERING,
            ).values(lease_expires_at=None, finished_at=now)
        )
        session.exec(
            DELIVERIES.update(
                WebhookDelivery, DeliveryStatus.PENDING, lost, current=DeliveryStatus.DELIVERING
            ).values(lease_expires_at=None, published_at=None)
        )
        if everything:
            session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.status) == DeliveryStatus.PENDING)
                .values(published_at=None)
            )
        due = list(
            session.exec(
                select(WebhookDelivery.id)
                .where(
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    col(WebhookDelivery.next_attempt_at) <= now,
                    or_(
                        col(WebhookDelivery.published_at).is_(None),
                        col(WebhookDelivery.published_at) < col(WebhookDelivery.next_attempt_at),
                        col(WebhookDelivery.published_at) < now - stale,
                    ),
                )
                .limit(SWEEP_BATCH)
            )
        )
    if due and publish_deliveries(due):
        with session_scope(engine) as session:
            session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id).in_(due))
                .values(published_at=now)
            )
    return len(due)
