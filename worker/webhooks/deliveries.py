"""Deliver webhook events: claim, sign, hand the POST to the webhook sender, record the
attempt, schedule the next one.

2xx: delivered. 410 Gone: the receiver asked to stop; a tenant endpoint is disabled. Any
other answer, a timeout or a connection failure: tried again after the next delay of the
schedule (PASSTHRU_WEBHOOK_SCHEDULE_S); after the last one the delivery is `failed`. Each
message keeps its `webhook-id` across attempts, so a receiver can process it once.

A delivery that cannot be attempted at all (its URL is not one the worker can send to, its
call is gone, its signing secret cannot be decrypted) records a failed attempt saying why
and ends `failed`: it never loops. Only one attempt of a delivery is ever in flight: the
claim moves it from `pending` to `delivering`, and nothing else does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError

from models.broker import MAX_COUNTDOWN_S, Publisher
from models.crypto.secrets import Vault
from models.db.tables import FunctionCall, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from models.webhooks.states import DELIVERIES, ENDED, DeliveryStatus
from worker import metrics
from worker.webhooks.events import Unsendable, prepare
from worker.webhooks.sender import ERROR_CHARS, PENDING_PER_SLOT, Poster, Prepared, Sent

log = logging.getLogger("passthru.webhooks")

_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_attempts = WebhookAttempt.__table__  # type: ignore[attr-defined]
_endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
_calls = FunctionCall.__table__  # type: ignore[attr-defined]
# Deliveries the sender has no room for come back this much later.
NO_ROOM_COUNTDOWN_S = 5.0
DECISION_CHARS = 200


@dataclass(frozen=True)
class WebhookRuntime:
    engine: Engine
    vault: Vault
    poster: Poster
    schedule_s: list[float]
    clock: Callable[[], datetime]
    # Publishes deliveries to come back (`NoPublisher`: the sweeper publishes them).
    publisher: Publisher
    # How long a claimed delivery is this worker's: longer than it may wait for a slot and
    # then attempt (lease_for()).
    lease_s: float


def lease_for(timeout_s: float) -> float:
    """A delivery's lease: its attempt's deadline once for each delivery that may wait
    ahead of it for the same slot, and a minute to spare."""
    return timeout_s * (PENDING_PER_SLOT + 1) + 60.0


def deliver(delivery_ids: Sequence[str], rt: WebhookRuntime) -> dict[str, str]:
    """Claim each due delivery among `delivery_ids` and hand it to the sender, which signs
    and sends it when a slot is free (its body is built then, so waiting deliveries hold no
    payload). Returns the status of each one claimed: its outcome when known already, else
    `delivering`. Deliveries the sender has no room for are published again shortly."""
    out: dict[str, str] = {}
    for index, delivery_id in enumerate(delivery_ids):
        if rt.poster.room() <= 0:
            rest = list(delivery_ids[index:])
            log.warning("webhook sender full; %d deliveries come back later", len(rest))
            rt.publisher.publish_deliveries(rest, NO_ROOM_COUNTDOWN_S)
            break
        delivery = _claim(rt, delivery_id)
        if delivery is None:
            continue
        out[delivery_id] = DeliveryStatus.DELIVERING
        started = rt.clock()

        def signed(delivery: WebhookDelivery = delivery) -> Prepared:
            return prepare(rt.engine, rt.vault, rt.clock, delivery)

        def done(
            outcome: Sent | Exception,
            delivery: WebhookDelivery = delivery,
            started: datetime = started,
        ) -> str | None:
            status = _ended(rt, delivery, started, outcome)
            if status is not None:
                out[delivery.id] = status
            return status

        rt.poster.post(delivery.id, signed, done)
    return out


def _ended(
    rt: WebhookRuntime, delivery: WebhookDelivery, started: datetime, outcome: Sent | Exception
) -> DeliveryStatus | None:
    """Record how one attempt ended: what the receiver answered, or why there was no
    attempt. None when nothing could be recorded (the lease brings the delivery back)."""
    if isinstance(outcome, Sent):
        return _record(rt, delivery, started, outcome)
    if isinstance(outcome, Unsendable):
        return _record(rt, delivery, started, Sent(None, str(outcome), 0), last=True)
    # The database, while preparing: recorded if it lets us (and retried on the schedule).
    why = f"could not be prepared: {type(outcome).__name__}"
    try:
        return _record(rt, delivery, started, Sent(None, why, 0))
    except SQLAlchemyError:
        log.warning("webhook %s: %s; left to the sweeper", delivery.id, why)
        return None


def _claim(rt: WebhookRuntime, delivery_id: str) -> WebhookDelivery | None:
    now = rt.clock()
    with rt.engine.begin() as conn:
        row = conn.execute(
            DELIVERIES.update(
                _deliveries,
                DeliveryStatus.DELIVERING,
                _deliveries.c.id == delivery_id,
                _deliveries.c.next_attempt_at <= now,
            )
            .values(
                lease_expires_at=now + timedelta(seconds=rt.lease_s),
                attempt_count=_deliveries.c.attempt_count + 1,
            )
            .returning(*_deliveries.c)
        ).first()
    return WebhookDelivery(**row._mapping) if row is not None else None


def _record(
    rt: WebhookRuntime,
    delivery: WebhookDelivery,
    started: datetime,
    sent: Sent,
    *,
    last: bool = False,
) -> DeliveryStatus:
    """Store one attempt and what follows from it; returns the delivery's new status.
    `last`: no attempt may follow (the delivery cannot be attempted at all)."""
    code, error = sent.status_code, (sent.error or None)
    status, decision, next_at = _decide(rt, delivery, code, error, started, last=last)
    with rt.engine.begin() as conn:
        conn.execute(
            _attempts.insert().values(
                delivery_id=delivery.id,
                number=delivery.attempt_count,
                started_at=started,
                duration_ms=sent.duration_ms,
                status_code=code,
                error=error[:ERROR_CHARS] if error else None,
                decision=decision[:DECISION_CHARS],
            )
        )
        # Nothing changes if the lease ran out meanwhile (the sweeper took it back).
        conn.execute(
            DELIVERIES.update(
                _deliveries,
                status,
                _deliveries.c.id == delivery.id,
                current=DeliveryStatus.DELIVERING,
            ).values(
                next_attempt_at=next_at,
                published_at=next_at if _soon(next_at, started) else None,
                lease_expires_at=None,
                finished_at=started if status in ENDED else None,
            )
        )
        if code == 410 and delivery.to_endpoint:
            conn.execute(
                update(_endpoints)
                .where(_endpoints.c.tenant_id == delivery.tenant_id)
                .values(disabled_at=started, disabled_reason="the endpoint answered 410 Gone")
            )
            log.warning("tenant %s: webhook endpoint disabled (410 Gone)", delivery.tenant_id)
    _log_attempt(delivery, status, decision, sent)
    if next_at is not None and _soon(next_at, started):
        rt.publisher.publish_deliveries(
            [delivery.id], max(0.0, (next_at - started).total_seconds())
        )
    return status


def _log_attempt(
    delivery: WebhookDelivery, status: DeliveryStatus, decision: str, sent: Sent
) -> None:
    log.info(
        "webhook %s %s attempt %d: %s",
        delivery.id,
        delivery.event,
        delivery.attempt_count,
        decision,
        extra={
            "event": "webhook.attempt",
            "delivery_id": delivery.id,
            "call_id": delivery.call_id,
            "tenant_id": delivery.tenant_id,
            "status": status,
            "status_code": sent.status_code,
            "duration_ms": sent.duration_ms,
        },
    )
    if status == DeliveryStatus.SUCCEEDED:
        outcome = "delivered"
    elif sent.status_code == 410:
        outcome = "gone"
    elif status == DeliveryStatus.PENDING:
        outcome = "retry"
    else:
        outcome = str(status)
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()


def _soon(next_at: datetime | None, now: datetime) -> bool:
    return next_at is not None and (next_at - now).total_seconds() <= MAX_COUNTDOWN_S


def _decide(
    rt: WebhookRuntime,
    delivery: WebhookDelivery,
    code: int | None,
    error: str | None,
    now: datetime,
    *,
    last: bool = False,
) -> tuple[DeliveryStatus, str, datetime | None]:
    """(status, decision text, next attempt time) after one attempt."""
    if last:
        return DeliveryStatus.FAILED, f"{error or 'cannot be sent'}; not retried", None
    if code is not None and 200 <= code < 300:
        return DeliveryStatus.SUCCEEDED, f"delivered ({code})", None
    if code == 410:
        return (
            DeliveryStatus.FAILED,
            "gone (410): not retried" + ("; endpoint disabled" if delivery.to_endpoint else ""),
            None,
        )
    why = f"answered {code}" if code is not None else (error or "no answer")
    if delivery.attempt_count >= len(rt.schedule_s):
        return DeliveryStatus.FAILED, f"{why}; no attempts left ({len(rt.schedule_s)})", None
    delay = rt.schedule_s[delivery.attempt_count]
    return DeliveryStatus.PENDING, f"{why}; retry in {delay:g} s", now + timedelta(seconds=delay)
