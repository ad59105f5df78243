"""The sweeper's part for webhook deliveries (worker/sweeper.py): deliveries whose worker
died mid-attempt are taken back, and those due that have no message are published."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from models.db.engine import session_scope
from models.db.tables import WebhookDelivery
from models.webhooks.states import DELIVERIES, DeliveryStatus

if TYPE_CHECKING:
    from worker.runtime import Runtime


def sweep_deliveries(
    rt: Runtime, now: datetime, stale: timedelta, *, everything: bool, limit: int
) -> int:
    """Webhook deliveries: take back those whose worker died mid-attempt (or end them, once
    they have used every attempt of the schedule: a delivery that kills its worker must not
    loop), and publish those due that have no message (a publish lost, a retry due later
    than a countdown, or every pending one after Redis lost its data). Those of tenants with
    deliveries waiting on their lists (models/webhooks/due.py) are waiting there, however
    long ago they were published, unless Redis lost them (`everything`). At most `limit` are
    published per call."""
    waiting = set() if everything else rt.waiting_tenants()
    with session_scope(rt.engine) as session:
        lost = col(WebhookDelivery.lease_expires_at) < now
        session.exec(
            DELIVERIES.update(
                WebhookDelivery,
                DeliveryStatus.FAILED,
                lost,
                col(WebhookDelivery.attempt_count) >= rt.rules.webhook_attempts,
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
        rows = _due_without_message(session, now, stale, waiting, limit)
    due = [delivery_id for delivery_id, _ in rows]
    if due and rt.publisher.publish_deliveries(due, tenant_of=dict(rows)):
        with session_scope(rt.engine) as session:
            session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id).in_(due))
                .values(published_at=now)
            )
    return len(due)


def _due_without_message(
    session: Session, now: datetime, stale: timedelta, waiting: set[str], limit: int
) -> list[tuple[str, str]]:
    """(id, tenant) of the pending deliveries due that have no message: never published,
    published before they were due, or published over `stale` ago and not of a tenant in
    `waiting`."""
    stale_message = col(WebhookDelivery.published_at) < now - stale
    if waiting:
        stale_message = and_(stale_message, col(WebhookDelivery.tenant_id).not_in(sorted(waiting)))
    return list(
        session.exec(
            select(WebhookDelivery.id, WebhookDelivery.tenant_id)
            .where(
                col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                col(WebhookDelivery.next_attempt_at) <= now,
                or_(
                    col(WebhookDelivery.published_at).is_(None),
                    col(WebhookDelivery.published_at) < col(WebhookDelivery.next_attempt_at),
                    stale_message,
                ),
            )
            .limit(limit)
        )
    )
