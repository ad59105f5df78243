"""A call under an Idempotency-Key: its key's row and its own written in one transaction,
or, within IDEMPOTENCY_WINDOW, the earlier call the key names (a 409 when the request
differs). A key outlives its window by being released: the earlier call keeps its result,
the key names the new call."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.db.direct import OnConnection, StatementRunner
from models.db.engine import session_scope
from models.db.tables import CallIdempotency, FunctionCall, Tenant
from models.errors import ApiError, ErrorDetail

_KEYS = CallIdempotency.__table__  # type: ignore[attr-defined]
_INSERT_KEY = insert(_KEYS)
_INSERT = insert(FunctionCall.__table__)  # type: ignore[attr-defined]


def write_keyed(
    engine: Engine,
    tenant: Tenant,
    key: str,
    row_of: Callable[[StatementRunner], dict[str, Any]],
    admit: Callable[[int], None],
) -> tuple[FunctionCall, bool]:
    """The call `row_of` checks and builds (its account read in the transaction), written
    under `key` in one transaction: the key's row first (a key taken meanwhile fails before
    the call), then the call's; and True. Or the earlier call the key names, and False.
    `admit` is asked once the call is new, before it is written."""
    with session_scope(engine) as session:
        row = row_of(OnConnection(session.connection()))
        call = FunctionCall.model_construct(**row)
        if prior := _existing(session, tenant, key):
            if prior.created_at >= call.created_at - IDEMPOTENCY_WINDOW:
                return _same_or_conflict(prior, call), False
            _release(session, tenant, key, prior)
        admit(1)
        try:
            session.execute(_INSERT_KEY, _key_row(tenant, key, row))
            # Core, not the unit of work: the row is complete, and flushing an ORM object
            # cost more CPU than the INSERT itself.
            session.execute(_INSERT, row)
        except IntegrityError:
            session.rollback()
            prior = _existing(session, tenant, key)
            if prior is None:
                raise
            return _same_or_conflict(prior, call), False
    return call, True


def _key_row(tenant: Tenant, key: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenant_id": tenant.id,
        "idempotency_key": key,
        "call_id": row["id"],
        "created_at": row["created_at"],
    }


def _fingerprint(call: FunctionCall) -> str:
    payload = [
        call.function,
        call.method,
        call.url,
        call.request_headers,
        call.request_body,
        call.connected_account_id,
        call.callback_url,
        call.options,
    ]
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


# How long an Idempotency-Key names the call it was first used for.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


def _existing(session: Session, tenant: Tenant, key: str) -> FunctionCall | None:
    """The call `key` names for `tenant` (call_idempotency, migration 0013), if any. A key
    whose call no longer exists (deleted by hand) is let go."""
    found = session.exec(
        select(CallIdempotency.call_id, FunctionCall)
        .outerjoin(FunctionCall, col(CallIdempotency.call_id) == col(FunctionCall.id))
        .where(
            col(CallIdempotency.tenant_id) == tenant.id,
            col(CallIdempotency.idempotency_key) == key,
        )
    ).first()
    if found is None:
        return None
    call_id, call = found
    if call is None:
        _forget_key(session, tenant, key, call_id)
    return call


def _forget_key(session: Session, tenant: Tenant, key: str, call_id: str) -> None:
    session.execute(
        delete(_KEYS).where(
            _KEYS.c.tenant_id == tenant.id,
            _KEYS.c.idempotency_key == key,
            _KEYS.c.call_id == call_id,
        )
    )


def _release(session: Session, tenant: Tenant, key: str, prior: FunctionCall) -> None:
    """An expired key: the call it named keeps its result but not the key, which may now
    name a new call."""
    _forget_key(session, tenant, key, prior.id)
    prior.idempotency_key = None
    session.add(prior)
    session.flush()


def _same_or_conflict(existing: FunctionCall, call: FunctionCall) -> FunctionCall:
    if _fingerprint(existing) != _fingerprint(call):
        raise ApiError(
            "idempotency_conflict",
            [
                ErrorDetail(
                    "Idempotency-Key",
                    f"already used for call {existing.id} with a different request",
                )
            ],
            409,
        )
    return existing
