"""Webhook events to send, written in the same transaction that finishes the calls, so an
event is never lost between "the call ended" and "someone will tell the caller"."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models.calls.states import FINAL
from models.db.tables import (
    Batch,
    ConnectedAccount,
    FunctionCall,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.webhooks.signing import ACCOUNT_EVENT, BATCH_EVENT, EVENT_OF_STATUS, message_id
from models.webhooks.states import DeliveryStatus

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
_batches = Batch.__table__  # type: ignore[attr-defined]


def _insert_ignoring_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(_deliveries).on_conflict_do_nothing(index_elements=["id"]), rows)


def enqueue_deliveries(
    conn: Connection,
    call_ids: Sequence[str],
    now: datetime,
    *,
    published: bool = True,
    finished: Sequence[Any] | None = None,
) -> list[str]:
    """An event for each finished call that has somewhere to go (its `callback_url`, else
    its tenant's enabled endpoint), and one for each of their batches now wholly finished.
    Idempotent (the event id is derived from the call or batch id). Returns the new ids;
    `published=False` leaves them for the sweeper to publish. `finished`: the calls' rows
    as FINISHED_COLUMNS, when the caller has them already (else they are read)."""
    if not call_ids:
        return []
    new: list[dict[str, Any]] = []
    batches: dict[str, tuple[str, str]] = {}
    if finished is None:
        finished = _finished(conn, call_ids)
    for call_id, tenant_id, batch_id, status, callback_url, endpoint_url in finished:
        target = callback_url or endpoint_url
        if target:
            new.append(
                _row(
                    message_id(call_id),
                    tenant_id,
                    EVENT_OF_STATUS[str(status)],
                    target,
                    to_endpoint=callback_url is None,
                    now=now,
                    published=published,
                    call_id=call_id,
                )
            )
        if batch_id and endpoint_url:
            batches[batch_id] = (tenant_id, endpoint_url)
    for batch_id, (tenant_id, url) in sorted(batches.items()):
        if _batch_finished(conn, batch_id):
            new.append(
                _row(
                    message_id(batch_id),
                    tenant_id,
                    BATCH_EVENT,
                    url,
                    to_endpoint=True,
                    now=now,
                    published=published,
                    batch_id=batch_id,
                )
            )
    _insert_ignoring_duplicates(conn, new)
    return [row["id"] for row in new]


def _enabled_endpoint_of(tenant_id: Any) -> ColumnElement[bool]:
    """The tenant's endpoint, when it is enabled (its URL may still be unset)."""
    return and_(_endpoints.c.tenant_id == tenant_id, _endpoints.c.disabled_at.is_(None))


def endpoint_url(conn: Connection, tenant_id: str) -> str | None:
    """The URL of the tenant's enabled webhook endpoint as it is now, or None (no endpoint,
    no URL, or disabled). An event for the endpoint goes wherever this says when it is
    sent: each attempt and each redelivery asks again."""
    return endpoint_now(conn, tenant_id)[0]


def endpoint_now(conn: Connection, tenant_id: str) -> tuple[str | None, str | None]:
    """What an attempt needs of the tenant's endpoint, in one read: its URL as
    `endpoint_url` says, and its stored signing secrets (None before any are made)."""
    row = conn.execute(
        select(
            _endpoints.c.url,
            _endpoints.c.secrets_enc,
            _enabled_endpoint_of(tenant_id).label("enabled"),
        ).where(_endpoints.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        return None, None
    return (row.url or None) if row.enabled else None, row.secrets_enc


def enqueue_account_event(conn: Connection, account: ConnectedAccount, now: datetime) -> list[str]:
    """`connection.created` for an account an end user connected, to its tenant's enabled
    endpoint (if any), written with the account. Returns the new ids (published now)."""
    url = endpoint_url(conn, account.tenant_id)
    if url is None:
        return []
    row = _row(
        message_id(account.id),
        account.tenant_id,
        ACCOUNT_EVENT,
        url,
        to_endpoint=True,
        now=now,
        published=True,
    )
    _insert_ignoring_duplicates(conn, [{**row, "account_id": account.id}])
    return [row["id"]]


_CALL_COLUMNS = (
    _calls.c.id,
    _calls.c.tenant_id,
    _calls.c.batch_id,
    _calls.c.status,
    _calls.c.callback_url,
)
# (id, tenant, batch, status, callback_url, the tenant's enabled endpoint URL) of each of
# the calls named that is finished; built once, run with parameters.
_FINISHED = (
    select(*_CALL_COLUMNS, _endpoints.c.url)
    .select_from(_calls.outerjoin(_endpoints, _enabled_endpoint_of(_calls.c.tenant_id)))
    .where(
        _calls.c.id.in_(bindparam("ids", expanding=True)),
        _calls.c.status.in_([s.value for s in FINAL]),
    )
)


# The same columns for a statement on the calls alone (an UPDATE's RETURNING): the tenant's
# enabled endpoint URL as a subquery. RETURNING names the call's columns without their
# table, which inside the subquery would name the endpoint's own `tenant_id`: the call's
# is named in full.
FINISHED_COLUMNS = (
    *_CALL_COLUMNS,
    select(_endpoints.c.url)
    .where(_enabled_endpoint_of(literal_column(f"{_calls.name}.tenant_id")))
    .scalar_subquery(),
)


def _finished(conn: Connection, call_ids: Sequence[str]) -> Sequence[Any]:
    return conn.execute(_FINISHED, {"ids": list(call_ids)}).all()


def _batch_finished(conn: Connection, batch_id: str) -> bool:
    """Whether every call of the batch is finished, counted once the batch's row is ours.

    Transactions that finish a batch's last calls at the same moment each see the other's
    calls still open: holding the batch's row until commit makes the later one count after
    the earlier has committed, so one of them writes the event. (The caller takes batches
    in sorted order, so two such transactions never wait on each other.)"""
    conn.execute(select(_batches.c.id).where(_batches.c.id == batch_id).with_for_update())
    open_calls = conn.execute(
        select(func.count())
        .select_from(_calls)
        .where(
            _calls.c.batch_id == batch_id,
            _calls.c.status.not_in([s.value for s in FINAL]),
        )
    ).scalar_one()
    return bool(open_calls == 0)


def _row(
    msg_id: str,
    tenant_id: str,
    event: str,
    url: str,
    *,
    to_endpoint: bool,
    now: datetime,
    published: bool,
    call_id: str | None = None,
    batch_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": msg_id,
        "tenant_id": tenant_id,
        "call_id": call_id,
        "batch_id": batch_id,
        "account_id": None,
        "event": event,
        "url": url,
        "to_endpoint": to_endpoint,
        "status": DeliveryStatus.PENDING,
        "attempt_count": 0,
        "next_attempt_at": now,
        "published_at": now if published else None,
        "created_at": now,
    }
