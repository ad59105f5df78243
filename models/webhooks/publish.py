"""Publish webhook deliveries stored as published, or, if the broker refuses, mark them
unpublished: the sweeper then publishes them at its next run, whether their tenant has
deliveries waiting on its list or not (worker/webhooks/recovery.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError

from models.broker import NO_TENANTS, Publisher
from models.db.engine import single_write
from models.db.tables import WebhookDelivery
from models.webhooks.states import DeliveryStatus

log = logging.getLogger("passthru.webhooks")

_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]


def publish_deliveries_or_forget(
    engine: Engine,
    publisher: Publisher,
    delivery_ids: Sequence[str],
    tenant_of: Mapping[str, str] = NO_TENANTS,
    countdown_s: float = 0.0,
) -> bool:
    """Publish `delivery_ids` (due now onto their tenants' lists, by `tenant_of`; else with
    a countdown); whether the broker took them."""
    if not delivery_ids or publisher.publish_deliveries(delivery_ids, countdown_s, tenant_of):
        return True
    try:
        with single_write(engine) as conn:
            conn.execute(
                update(_deliveries)
                .where(
                    _deliveries.c.id.in_(list(delivery_ids)),
                    _deliveries.c.status == DeliveryStatus.PENDING,
                )
                .values(published_at=None)
            )
    except SQLAlchemyError as exc:
        log.warning(
            "%d webhook delivery(ies) not published and not marked so (%s): published again "
            "by the sweeper after PASSTHRU_REPUBLISH_AFTER_S, or within an hour if their "
            "tenant has deliveries waiting",
            len(delivery_ids),
            type(exc).__name__,
        )
    return False
