"""The tenant's webhook endpoint: its URL, and the signing secret shown once."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from api.call_urls import check_callback_url
from api.schemas.webhooks import WebhookEndpointOut
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.tables import Tenant, WebhookEndpoint
from models.errors import ApiError, CredentialsError, ErrorDetail
from models.webhooks.signing import new_secret, signing_secrets, store_secrets, unshown_secret

log = logging.getLogger("passthru.api")


def put_endpoint(
    engine: Engine,
    vault: Vault,
    tenant: Tenant,
    url: str | None,
    now: datetime,
    allow_private: bool,
) -> WebhookEndpointOut:
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
        return WebhookEndpointOut.of(endpoint, shown)


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


def get_endpoint(engine: Engine, tenant: Tenant) -> WebhookEndpointOut:
    with Session(engine) as session:
        return WebhookEndpointOut.of(_existing(session, tenant))


def rotate_secret(
    engine: Engine, vault: Vault, tenant: Tenant, now: datetime
) -> WebhookEndpointOut:
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
        return WebhookEndpointOut.of(endpoint, shown)
