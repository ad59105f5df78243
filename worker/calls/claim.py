"""Claim calls for this worker: one conditional UPDATE, so a duplicate delivery does nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, any_, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY

from models.accounts.states import AccountStatus
from models.calls.states import CALLS, CallStatus
from models.db.direct import DirectStatement
from models.db.engine import UTCDateTime, single_write
from models.db.tables import ConnectedAccount, FunctionCall

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class CallRow:
    """What the worker needs of a call (plain values: cheaper than ORM objects)."""

    id: str
    tenant_id: str
    app: str
    method: str
    url: str
    request_headers: dict[str, str] | None
    request_body: Any
    connected_account_id: str
    idempotency_key: str | None
    batch_id: str | None
    attempt_count: int
    options: dict[str, Any] | None  # the call's own `retry` and `timeout` params
    rate_wait: dict[str, Any] | None  # a rate-limit slot it booked before it was handed back


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    status: AccountStatus
    credentials_enc: str
    connection_config: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Claimed:
    call: CallRow
    account: AccountRow | None
    attempt: int  # 1-based number of the attempt this claim starts


_CALL_COLUMNS = [_calls.c[name] for name in CallRow.__slots__]
_ACCOUNT_COLUMNS = [_accounts.c[name] for name in AccountRow.__slots__]


# Built once, run with parameters: building a statement costs more CPU than running it.
_NOW = bindparam("now", type_=UTCDateTime())


def _claim(ids: ColumnElement[bool]) -> Any:
    """The claim of the calls `ids` names: each claimable one moves to `running`."""
    return (
        CALLS.update(
            _calls,
            CallStatus.RUNNING,
            ids,
            or_(_calls.c.next_attempt_at.is_(None), _calls.c.next_attempt_at <= _NOW),
            keyed=True,
        )
        .values(
            lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()),
            claimed_by=bindparam("claimed_by"),
            attempt_count=_calls.c.attempt_count + 1,
            started_at=func.coalesce(_calls.c.started_at, _NOW),
            next_attempt_at=None,
        )
        .returning(*_CALL_COLUMNS)
    )


# SQLite: a parameter per id.
_CLAIM = _claim(_calls.c.id.in_(bindparam("ids", expanding=True)))
# Postgres: the ids as one array (psycopg caches its conversion of a statement of a few
# parameters, not of a hundred; Postgres spends less CPU on it too, measured), and the
# UPDATE as a CTE joined to the accounts, one round trip.
_CLAIMED = _claim(_calls.c.id == any_(bindparam("ids", type_=ARRAY(_calls.c.id.type)))).cte(
    "claimed"
)
_CLAIM_JOINED = select(
    *_CLAIMED.c, *[c.label(f"account_{c.name}") for c in _ACCOUNT_COLUMNS]
).select_from(_CLAIMED.outerjoin(_accounts, _accounts.c.id == _CLAIMED.c.connected_account_id))
_ACCOUNTS = select(*_ACCOUNT_COLUMNS).where(_accounts.c.id.in_(bindparam("ids", expanding=True)))
# On the driver's cursor (models/db/direct.py): an interactive call waits on its claim, and
# through a SQLAlchemy connection the claim of one call took twice the CPU.
_CLAIM_DIRECT = DirectStatement(_CLAIM_JOINED)


def claim(
    engine: Engine,
    call_ids: Sequence[str],
    *,
    now: datetime,
    deadline_s: float,
    worker_id: str | None = None,
) -> list[Claimed]:
    """Move each claimable call to `running`, held by `worker_id`'s heartbeat and for
    `deadline_s` at most; return the ones this worker won.

    One statement on Postgres (UPDATE ... RETURNING joined to the accounts, one round trip:
    no BEGIN, no COMMIT, run on the driver's cursor), two on SQLite, whatever the number of
    ids.
    """
    if not call_ids:
        return []
    params = {
        "ids": list(call_ids),
        "now": now,
        "lease_expires_at": now + timedelta(seconds=deadline_s),
        "claimed_by": worker_id,
    }
    if engine.dialect.name == "postgresql":
        calls, accounts = _claim_joined(engine, params)
    else:
        with single_write(engine) as conn:
            calls, accounts = _claim_then_read(conn, params)
    order = {call_id: i for i, call_id in enumerate(call_ids)}
    calls.sort(key=lambda c: order.get(c.id, 0))
    return [Claimed(c, accounts.get(c.connected_account_id), c.attempt_count) for c in calls]


Rows = tuple[list[CallRow], dict[str, AccountRow]]


def _claim_joined(engine: Engine, params: dict[str, Any]) -> Rows:
    width = len(_CALL_COLUMNS)
    calls: list[CallRow] = []
    found: dict[str, AccountRow] = {}
    for row in _CLAIM_DIRECT.rows(engine, params):
        calls.append(CallRow(*row[:width]))
        if row[width] is not None:
            account_id, status, *rest = row[width:]
            found[account_id] = AccountRow(account_id, AccountStatus(status), *rest)
    return calls, found


def _claim_then_read(conn: Connection, params: dict[str, Any]) -> Rows:
    """The UPDATE, then the accounts (SQLite allows RETURNING only at the top level)."""
    calls = [CallRow(*row) for row in conn.execute(_CLAIM, params)]
    if not calls:
        return [], {}
    account_ids = sorted({c.connected_account_id for c in calls})
    rows = conn.execute(_ACCOUNTS, {"ids": account_ids})
    return calls, {row.id: AccountRow(*row) for row in rows}
