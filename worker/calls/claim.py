"""Claim calls for this worker: one conditional UPDATE, so a duplicate delivery does nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select

from models.accounts.states import AccountStatus
from models.calls.states import CALLS, CallStatus
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


def claim(
    engine: Engine, call_ids: Sequence[str], *, now: datetime, lease_s: float
) -> list[Claimed]:
    """Move each claimable call to `running` with a lease; return the ones this worker won.

    Two statements whatever the number of ids: UPDATE ... RETURNING, then the accounts.
    """
    if not call_ids:
        return []
    stmt = (
        CALLS.update(
            _calls,
            CallStatus.RUNNING,
            _calls.c.id.in_(list(call_ids)),
            or_(_calls.c.next_attempt_at.is_(None), _calls.c.next_attempt_at <= now),
        )
        .values(
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempt_count=_calls.c.attempt_count + 1,
            started_at=func.coalesce(_calls.c.started_at, now),
            next_attempt_at=None,
        )
        .returning(*_CALL_COLUMNS)
    )
    with engine.begin() as conn:
        calls = [CallRow(*row) for row in conn.execute(stmt)]
        if not calls:
            return []
        account_ids = sorted({c.connected_account_id for c in calls})
        accounts = {
            row.id: AccountRow(*row)
            for row in conn.execute(
                select(*_ACCOUNT_COLUMNS).where(_accounts.c.id.in_(account_ids))
            )
        }
    order = {call_id: i for i, call_id in enumerate(call_ids)}
    calls.sort(key=lambda c: order.get(c.id, 0))
    return [Claimed(c, accounts.get(c.connected_account_id), c.attempt_count) for c in calls]
