"""The tenant's webhook endpoint and a call's deliveries (what the routes do)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from api.call_log import load_call
from api.validation import check_callback_url
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.tables import Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from models.errors import ApiError, CredentialsError, ErrorDetail
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.signing import (
    message_id,
    new_secret,
    signing_secrets,
    store_secrets,
    unshown_secret,
)

log = logging.getLogger("passthru.api")


def endpoint_out(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": endpoint.url,
        "enabled": endpoint.disabled_at is None,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
        "updated_at": endpoint.updated_at,
    }
    if secret is not None:
        out["secret"] = secret
    return out


def put_endpoint(
    engine: Engine,
    vault: Vault,
    tenant: Tenant,
    url: str | None,
    now: datetime,
    allow_private: bool = False,
) -> dict[str, Any]:
    """Set (or clear) the default URL and enable it. The signing secret is shown once: when
    it is made here, or on the first PUT after a delivery made it."""
    check_callback_url(url, field="url", allow_private=allow_private)
    with session_scope(engine) as session:
        endpoint = session.get(WebhookEndpoint, tenant.id)
        shown = None
        if endpoint is None:
            shown = new_secret()
            endpoint = WebhookEndpoint(
                tenant_id=tenant.id,
                secrets_enc=store_secrets(vault, shown, tenant_id=tenant.id),
                created_at=now,
            )
        elif (shown := _unshown(vault, endpoint)) is not None:
            endpoint.secrets_enc = store_secrets(vault, shown, tenant_id=tenant.id)
        endpoint.url = url
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        endpoint.updated_at = now
        session.add(endpoint)
        session.flush()
        return endpoint_out(endpoint, shown)


def _unshown(vault: Vault, endpoint: WebhookEndpoint) -> str | None:
    try:
        return unshown_secret(vault, endpoint.secrets_enc, tenant_id=endpoint.tenant_id)
    except CredentialsError as exc:
        log.warning("tenant %s: webhook secrets unreadable (%s)", endpoint.tenant_id, exc)
        raise ApiError(
            "webhook_secret_unreadable",
            [
                ErrorDetail(
                    "secret",
                    "the stored signing secret cannot be read, so nothing is signed with it: "
                    "POST /webhook-endpoint/rotate-secret makes a new one",
                )
            ],
            409,
        ) from exc


def _existing(session: Session, tenant: Tenant) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, tenant.id)
    if endpoint is None:
        raise ApiError(
            "not_found",
            [ErrorDetail("webhook-endpoint", "none yet: create it with PUT /webhook-endpoint")],
            404,
        )
    return endpoint


def get_endpoint(engine: Engine, tenant: Tenant) -> dict[str, Any]:
    with Session(engine) as session:
        return endpoint_out(_existing(session, tenant))


def rotate_secret(engine: Engine, vault: Vault, tenant: Tenant, now: datetime) -> dict[str, Any]:
    """A new current secret (shown once); the old one still signs for 24 hours. Stored
    secrets that cannot be read (no listed key opens them, or they were copied from another
    tenant's row) are replaced without a previous one: nothing could sign with them."""
    with session_scope(engine) as session:
        endpoint = _existing(session, tenant)
        previous: str | None
        try:
            previous = signing_secrets(
                vault, endpoint.secrets_enc, now.timestamp(), tenant_id=tenant.id
            )[0]
        except CredentialsError as exc:
            log.warning("tenant %s: webhook secrets unreadable (%s); replaced", tenant.id, exc)
            previous = None
        shown = new_secret()
        endpoint.secrets_enc = store_secrets(vault, shown, previous, tenant_id=tenant.id)
        endpoint.updated_at = now
        session.add(endpoint)
        session.flush()
        return endpoint_out(endpoint, shown)


def deliveries_of(engine: Engine, tenant: Tenant, call_id: str) -> list[dict[str, Any]]:
    load_call(engine, tenant, call_id)
    with Session(engine) as session:
        rows = list(
            session.exec(
                select(WebhookDelivery)
                .where(col(WebhookDelivery.call_id) == call_id)
                .order_by(col(WebhookDelivery.created_at))
            )
        )
        out = []
        for d in rows:
            attempts = session.exec(
                select(WebhookAttempt)
                .where(col(WebhookAttempt.delivery_id) == d.id)
                .order_by(col(WebhookAttempt.number))
            )
            out.append(
                {
                    "id": d.id,
                    "event": d.event,
                    "url": d.url,
                    "status": d.status,
                    "attempt_count": d.attempt_count,
                    "next_attempt_at": d.next_attempt_at if d.status == "pending" else None,
                    "created_at": d.created_at,
                    "finished_at": d.finished_at,
                    "attempts": [
                        {
                            "number": a.number,
                            "started_at": a.started_at,
                            "duration_ms": a.duration_ms,
                            "status_code": a.status_code,
                            "error": a.error,
                            "decision": a.decision,
                        }
                        for a in attempts
                    ],
                }
            )
        return out


def redeliver(engine: Engine, tenant: Tenant, call_id: str, now: datetime) -> str:
    """Send the call's event again now; returns the delivery id to publish. A delivery in
    flight (a worker is sending it) is a 409: two senders would race on its attempts."""
    call = load_call(engine, tenant, call_id)
    if not call.status.is_final:
        raise ApiError(
            "not_finished",
            [ErrorDetail("id", f"call {call_id} is {call.status}; it has no result to send yet")],
            409,
        )
    delivery_id = message_id(call_id)
    with session_scope(engine) as session:
        again = session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.status) != "delivering",
            )
            .values(status="pending", next_attempt_at=now, published_at=now, finished_at=None)
        ).rowcount
        if not again:
            if session.get(WebhookDelivery, delivery_id) is not None:
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
            created = enqueue_deliveries(session.connection(), [call_id], now)
            if not created:
                raise ApiError(
                    "no_webhook_target",
                    [
                        ErrorDetail(
                            "callback_url",
                            "the call has no callback_url and there is no enabled webhook "
                            "endpoint: set one with PUT /webhook-endpoint",
                        )
                    ],
                )
    return delivery_id
