"""What a delivery sends: the event (`{type, timestamp, data}`, the call as the API shows it
or a batch's counts) signed with the tenant's secrets as Standard Webhooks says, or why it
cannot be sent at all (`Unsendable`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError, NoResultFound

from models.calls.resources import call_out
from models.crypto.secrets import Vault
from models.db.engine import read_connection
from models.db.tables import ConnectedAccount, FunctionCall, WebhookDelivery, WebhookEndpoint
from models.errors import CredentialsError
from models.net.urls import MAX_CALLBACK_URL_CHARS, parse_http_url
from models.webhooks.outbox import endpoint_now
from models.webhooks.signing import new_secret, signature_header, signing_secrets, store_secrets
from worker.webhooks.sender import Prepared

_endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]
# Events larger than this go without the call's output (`output_omitted`): the receiver
# reads it with GET /function-calls/{id}. A receiver is not a bulk channel, and each event
# is held in memory while it is sent.
MAX_EVENT_BYTES = 1024 * 1024
USER_AGENT = "passthru-webhooks/0.1"


class Unsendable(Exception):
    """The delivery cannot be attempted at all; the message says why."""


NO_ENDPOINT = "the tenant has no enabled webhook endpoint now (set one, then redeliver)"


def event_body(conn: Connection, delivery: WebhookDelivery) -> bytes:
    """`{type, timestamp, data}`: the call as `GET /function-calls/{id}` shows it (without
    attempts), the account connected (never its credentials), or the batch's counts."""
    data: dict[str, Any]
    if delivery.call_id:
        row = conn.execute(select(_calls).where(_calls.c.id == delivery.call_id)).one()
        data = call_out(FunctionCall.model_construct(**row._mapping)).model_dump(mode="json")
    elif delivery.account_id:
        data = _account_data(conn, delivery.account_id)
    else:
        counts = conn.execute(
            select(_calls.c.status, _calls.c.id).where(_calls.c.batch_id == delivery.batch_id)
        ).all()
        per_status: dict[str, int] = {}
        for status, _ in counts:
            per_status[str(status)] = per_status.get(str(status), 0) + 1
        data = {"batch_id": delivery.batch_id, "total": len(counts), "counts": per_status}
    event = {"type": delivery.event, "timestamp": delivery.created_at.isoformat(), "data": data}
    body = orjson.dumps(event)
    if len(body) > MAX_EVENT_BYTES and "output" in data:
        event["data"] = {**data, "output": None, "output_omitted": True}
        body = orjson.dumps(event)
    return body


# What a `connection.created` event shows of the account: what GET /connected-accounts shows.
_ACCOUNT_FIELDS = ("id", "app", "user_id", "status", "connection_config", "source", "created_at")


def _account_data(conn: Connection, account_id: str) -> dict[str, Any]:
    row = conn.execute(
        select(*(_accounts.c[name] for name in _ACCOUNT_FIELDS)).where(_accounts.c.id == account_id)
    ).one()  # a removed account: NoResultFound, which `prepare` reports as unsendable
    data = dict(row._mapping)
    data["status"] = str(data["status"])
    data["created_at"] = data["created_at"].isoformat()
    return data


def _stored_secrets(engine: Engine, tenant_id: str) -> str | None:
    with read_connection(engine) as conn:
        return conn.execute(
            select(_endpoints.c.secrets_enc).where(_endpoints.c.tenant_id == tenant_id)
        ).scalar_one_or_none()


def _secrets(
    engine: Engine, vault: Vault, clock: Callable[[], datetime], tenant_id: str, enc: str | None
) -> list[str]:
    """The tenant's signing secrets (`enc`, as stored); one is made for a tenant that has
    none yet (a call with a callback_url before any PUT /webhook-endpoint). Deliveries of one
    tenant are prepared side by side: when another one made the secret first, its secret is
    used."""
    if enc is None:
        enc = store_secrets(vault, new_secret(), tenant_id=tenant_id, shown=False)
        try:
            with engine.begin() as conn:
                conn.execute(
                    _endpoints.insert().values(
                        tenant_id=tenant_id,
                        url=None,
                        secrets_enc=enc,
                        created_at=clock(),
                        updated_at=clock(),
                    )
                )
        except IntegrityError:
            enc = _stored_secrets(engine, tenant_id)
            if enc is None:
                raise
    return signing_secrets(vault, enc, time.time(), tenant_id=tenant_id)


@dataclass(frozen=True)
class Stored:
    """What one attempt of a delivery is made of, read at once: where it goes (None: the
    tenant has no enabled endpoint now, for an event to its endpoint), the tenant's signing
    secrets as stored, and the event's body (None: its call or account is gone)."""

    to: str | None
    secrets_enc: str | None
    body: bytes | None
    # Why the body could not be read, when that was not its call or account being gone.
    failure: Exception | None = None


def read(engine: Engine, delivery: WebhookDelivery) -> Stored:
    """Where an attempt of the delivery goes, as stored: the call's own `callback_url`, which
    never changes, or the tenant's webhook endpoint as it is now (an attempt follows each
    PUT /webhook-endpoint, so a URL the tenant replaced gets nothing more); and what it
    sends, read only when it goes somewhere. One connection, a read for each."""
    with read_connection(engine) as conn:
        url_now, secrets_enc = endpoint_now(conn, delivery.tenant_id)
        to = url_now if delivery.to_endpoint else delivery.url
        if to is None:
            return Stored(None, secrets_enc, None)
        try:
            return Stored(to, secrets_enc, event_body(conn, delivery))
        except NoResultFound:
            return Stored(to, secrets_enc, None)
        except Exception as exc:  # raised by `prepare`, once the attempt knows where it went
            return Stored(to, secrets_enc, None, exc)


def prepare(
    engine: Engine,
    vault: Vault,
    clock: Callable[[], datetime],
    delivery: WebhookDelivery,
    stored: Stored,
) -> Prepared:
    """The signed request of one attempt (what `read` found), or Unsendable saying why there
    can be none. It is signed with the tenant's secrets as they are now."""
    if stored.to is None:
        raise Unsendable(NO_ENDPOINT)
    try:
        url = str(parse_http_url(stored.to, max_chars=MAX_CALLBACK_URL_CHARS))
    except ValueError as exc:
        raise Unsendable(f"the URL {exc}") from None
    if stored.failure is not None:
        raise stored.failure
    body = stored.body
    if body is None:
        raise Unsendable("the call no longer exists (deleted by retention)")
    try:
        secrets = _secrets(engine, vault, clock, delivery.tenant_id, stored.secrets_enc)
    except (CredentialsError, ValueError) as exc:
        raise Unsendable(f"the signing secret cannot be read: {exc}") from None
    timestamp = int(time.time())
    return Prepared(
        delivery.id,
        url,
        body,
        {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(secrets, delivery.id, timestamp, body),
        },
        tenant_id=delivery.tenant_id,
    )
