"""What follows one webhook attempt: the delivery's next status and the decision as the
attempt records it (a pure function of the answer and the schedule), and its log line and
metric."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from models.broker import MAX_COUNTDOWN_S
from models.db.tables import WebhookDelivery
from models.webhooks.states import DeliveryStatus
from worker import metrics
from worker.webhooks.sender import Sent

log = logging.getLogger("passthru.webhooks")


def log_attempt(
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
    elif status == DeliveryStatus.PENDING:
        outcome = "retry"
    elif sent.status_code == 410:
        outcome = "gone"
    else:
        outcome = str(status)
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()


def soon(next_at: datetime | None, now: datetime) -> bool:
    return next_at is not None and (next_at - now).total_seconds() <= MAX_COUNTDOWN_S


def decide(
    schedule_s: list[float],
    delivery: WebhookDelivery,
    code: int | None,
    error: str | None,
    now: datetime,
    *,
    last: bool,
    gone: bool,
) -> tuple[DeliveryStatus, str, datetime | None]:
    """(status, decision text, next attempt time) after one attempt. `gone`: a 410 that
    ends the delivery (from its callback_url, or from its endpoint's URL, now disabled); a
    410 from a URL the endpoint no longer has is retried, at the endpoint's URL then."""
    if last:
        return DeliveryStatus.FAILED, f"{error or 'cannot be sent'}; not retried", None
    if code is not None and 200 <= code < 300:
        return DeliveryStatus.SUCCEEDED, f"delivered ({code})", None
    if gone:
        return (
            DeliveryStatus.FAILED,
            "gone (410): not retried" + ("; endpoint disabled" if delivery.to_endpoint else ""),
            None,
        )
    if code == 410:
        why = "answered 410 from a URL the endpoint no longer has"
    else:
        why = f"answered {code}" if code is not None else (error or "no answer")
    if delivery.attempt_count >= len(schedule_s):
        return DeliveryStatus.FAILED, f"{why}; no attempts left ({len(schedule_s)})", None
    delay = schedule_s[delivery.attempt_count]
    return DeliveryStatus.PENDING, f"{why}; retry in {delay:g} s", now + timedelta(seconds=delay)
