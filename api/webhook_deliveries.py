"""A call's webhook deliveries: every attempt of each, and sending one again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from api.call_log import load_call
from api.schemas.webhooks import DeliveryOut
from models.db.engine import session_scope
from models.db.tables import Tenant, WebhookAttempt, WebhookDelivery
from models.errors import ApiError, ErrorDetail
from models.webhooks.outbox import endpoint_url, enqueue_deliveries
from models.webhooks.signing import message_id
from models.webhooks.states import DELIVERIES, REDELIVERABLE, DeliveryStatus


def deliveries_of(engine: Engine, tenant: Tenant, call_id: str) -> list[DeliveryOut]:
    """The call's deliveries, oldest first, each with its attempts; a 404 for a call that
    is not the tenant's."""
    load_call(engine, tenant, call_id)
    with Session(engine) as session:
        rows = list(
            session.exec(
                select(WebhookDelivery)
                .where(col(WebhookDelivery.call_id) == call_id)
                .order_by(col(WebhookDelivery.created_at))
            )
        )
        return [DeliveryOut.of(d, _attempts(session, d.id)) for d in rows]


def _attempts(session: Session, delivery_id: str) -> list[WebhookAttempt]:
    return list(
        session.exec(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id) == delivery_id)
            .order_by(col(WebhookAttempt.number))
        )
    )


def redeliver(engine: Engine, tenant: Tenant, call_id: str, now: datetime) -> str:
    """Send the call's event again now; returns the delivery id to publish. It goes to the
    call's callback_url, else to the tenant's webhook endpoint as it is now (a 400 when
    there is none enabled). A delivery in flight (a worker is sending it) is a 409: two
    senders would race on its attempts."""
    call = load_call(engine, tenant, call_id)
    if not call.status.is_final:
        raise ApiError(
            "not_finished",
            [ErrorDetail("id", f"call {call_id} is {call.status}; it has no result to send yet")],
            409,
        )
    delivery_id = message_id(call_id)
    with session_scope(engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            if not enqueue_deliveries(session.connection(), [call_id], now):
                raise _no_target()
            return delivery_id
        url = (
            endpoint_url(session.connection(), tenant.id) if delivery.to_endpoint else delivery.url
        )
        if url is None:
            raise _no_target()
        again = session.exec(
            DELIVERIES.update(
                WebhookDelivery,
                DeliveryStatus.PENDING,
                col(WebhookDelivery.id) == delivery_id,
                current=REDELIVERABLE,
            ).values(url=url, next_attempt_at=now, published_at=now, finished_at=None)
        ).rowcount
        if not again:
            raise ApiError(
                "delivery_in_flight",
                [
                    ErrorDetail(
                        "id",
                        f"the event of call {call_id} is being delivered now; redeliver "
                        "it once that attempt has ended (GET .../deliveries shows it)",
                    )
                ],
                409,
            )
    return delivery_id


def _no_target() -> ApiError:
    return ApiError(
        "no_webhook_target",
        [
            ErrorDetail(
                "callback_url",
                "the call has no callback_url and there is no enabled webhook "
                "endpoint: set one with PUT /webhook-endpoint",
            )
        ],
    )
