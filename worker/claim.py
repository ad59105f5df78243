"""Claim calls for this worker: one conditional UPDATE, so a duplicate delivery does nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, or_, update
from sqlmodel import col, select

from models.db import session_scope
from models.states import CallStatus, sources_of
from models.tables import ConnectedAccount, FunctionCall


@dataclass(frozen=True)
class Claimed:
    call: FunctionCall
    account: ConnectedAccount | None
    attempt: int  # 1-based number of the attempt this claim starts


def claim(
    engine: Engine, call_ids: Sequence[str], *, now: datetime, lease_s: float
) -> list[Claimed]:
    """Move each claimable call to `running` with a lease; return the ones this worker won.

    Three statements whatever the number of ids: the UPDATE ... RETURNING, the calls, and
    their accounts.
    """
    if not call_ids:
        return []
    stmt = (
        update(FunctionCall)
        .where(
            col(FunctionCall.id).in_(list(call_ids)),
            col(FunctionCall.status).in_(sources_of(CallStatus.RUNNING)),
            or_(
                col(FunctionCall.next_attempt_at).is_(None),
                col(FunctionCall.next_attempt_at) <= now,
            ),
        )
        .values(
            status=CallStatus.RUNNING,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempt_count=FunctionCall.attempt_count + 1,  # type: ignore[operator]
            started_at=func.coalesce(FunctionCall.started_at, now),
            next_attempt_at=None,
        )
        .returning(col(FunctionCall.id))
        .execution_options(synchronize_session=False)
    )
    with session_scope(engine) as session:
        won = [row[0] for row in session.exec(stmt)]
        if not won:
            return []
        calls = list(session.exec(select(FunctionCall).where(col(FunctionCall.id).in_(won))))
        account_ids = {c.connected_account_id for c in calls}
        accounts = {
            a.id: a
            for a in session.exec(
                select(ConnectedAccount).where(col(ConnectedAccount.id).in_(account_ids))
            )
        }
    order = {call_id: i for i, call_id in enumerate(call_ids)}
    calls.sort(key=lambda c: order.get(c.id, 0))
    return [Claimed(c, accounts.get(c.connected_account_id), c.attempt_count) for c in calls]
