"""Claim a call for this worker: one conditional UPDATE, so a duplicate delivery does nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, or_, update
from sqlmodel import col

from models.db import session_scope
from models.states import CallStatus, sources_of
from models.tables import ConnectedAccount, FunctionCall


@dataclass(frozen=True)
class Claimed:
    call: FunctionCall
    account: ConnectedAccount | None
    attempt: int  # 1-based number of the attempt this claim starts


def claim(engine: Engine, call_id: str, *, now: datetime, lease_s: float) -> Claimed | None:
    """Move the call to `running` with a lease, if it is claimable now; else None."""
    stmt = (
        update(FunctionCall)
        .where(
            col(FunctionCall.id) == call_id,
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
    )
    with session_scope(engine) as session:
        if session.exec(stmt).rowcount != 1:
            return None
        call = session.get(FunctionCall, call_id)
        assert call is not None
        account = session.get(ConnectedAccount, call.connected_account_id)
        return Claimed(call, account, call.attempt_count)
