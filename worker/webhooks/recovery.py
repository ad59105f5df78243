"""The sweeper's part for webhook deliveries (worker/sweeper.py): deliveries whose worker
died mid-attempt are taken back, and those due that have no message are published."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    all_,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from models.db.engine import session_scope
from models.db.tables import WebhookDelivery
from models.webhooks.states import DELIVERIES, DeliveryStatus

if TYPE_CHECKING:
    from worker.runtime import Runtime

# A pending delivery of a tenant with deliveries waiting on its list is most likely on it,
# however long ago it was published; after this long it is published again all the same
# (one taken by a process that died before it claimed it, or lost with a Redis restored
# from an older snapshot). A duplicate on the list is harmless: the claim lets one attempt
# run, and the mark set now stops another for as long again.
WAITING_LIMIT_S = 3600.0


def sweep_deliveries(
    rt: Runtime, now: datetime, stale: timedelta, *, everything: bool, limit: int
) -> int:
    """Webhook deliveries: take back those whose worker died mid-attempt (or end them, once
    they have used every attempt of the schedule: a delivery that kills its worker must not
    loop), and publish those due that have no message (a publish lost, a retry due later
    than a countdown, or every pending one after Redis lost its data). Those of tenants with
    deliveries waiting on their lists (models/webhooks/due.py) are most likely waiting
    there: they are published again only after WAITING_LIMIT_S, unless Redis lost its data
    (`everything`). At most `limit` are published per call."""
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
    published before they were due, or published over `stale` ago (over WAITING_LIMIT_S
    ago, for a tenant in `waiting`)."""
    published = col(WebhookDelivery.published_at)
    stale_message = published < now - stale
    if waiting:
        limit_s = max(WAITING_LIMIT_S, stale.total_seconds())
        stale_message = and_(
            stale_message,
            or_(
                _not_one_of(session, col(WebhookDelivery.tenant_id), waiting),
                published < now - timedelta(seconds=limit_s),
            ),
        )
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


def _not_one_of(session: Session, column: Mapped[str], values: set[str]) -> ColumnElement[bool]:
    """`column` is none of `values`, however many: one bind parameter (an array on
    Postgres, JSON on SQLite), never one per value (Postgres takes at most 65,535)."""
    if session.get_bind().dialect.name == "postgresql":
        return column != all_(bindparam("waiting", sorted(values), type_=ARRAY(String)))
    listed: Select[str] = sa_select(literal_column("value", String)).select_from(
        func.json_each(bindparam("waiting", json.dumps(sorted(values))))
    )
    return column.not_in(listed.scalar_subquery())
