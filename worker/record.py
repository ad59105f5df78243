"""Write a call's final result and its attempt in one short transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, update
from sqlmodel import col

from models.db import session_scope
from models.states import CallStatus, sources_of
from models.tables import CallAttempt, ConnectedAccount, FunctionCall

# `last_used_at` is written at most this often, so busy accounts are not a hot row.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class Result:
    """What one attempt ended with, ready to store."""

    status: CallStatus
    decision: str
    network_code: str | None = None
    output: Any = None
    output_truncated: bool = False
    headers: dict[str, str] | None = None
    error: str | None = None
    error_message: str | None = None
    duration_ms: int = 0


def record(
    engine: Engine,
    *,
    call_id: str,
    account_id: str | None,
    attempt: int,
    started_at: datetime,
    result: Result,
    now: datetime,
) -> bool:
    """Store `result` if the call is still ours to finish; False if it was not (e.g. swept)."""
    stmt = (
        update(FunctionCall)
        .where(
            col(FunctionCall.id) == call_id,
            col(FunctionCall.status) == CallStatus.RUNNING,
            col(FunctionCall.attempt_count) == attempt,
        )
        .values(
            status=result.status,
            network_code=result.network_code,
            output=result.output,
            output_truncated=result.output_truncated,
            response_headers=result.headers,
            error=result.error,
            error_message=result.error_message,
            duration_ms=result.duration_ms,
            lease_expires_at=None,
            finished_at=now if result.status.is_final else None,
        )
    )
    assert CallStatus.RUNNING in sources_of(result.status)
    with session_scope(engine) as session:
        if session.exec(stmt).rowcount != 1:
            return False
        session.add(
            CallAttempt(
                call_id=call_id,
                number=attempt,
                started_at=started_at,
                duration_ms=result.duration_ms,
                network_code=result.network_code,
                error=result.error,
                error_message=result.error_message,
                decision=result.decision,
            )
        )
        if account_id is not None:
            session.exec(
                update(ConnectedAccount)
                .where(
                    col(ConnectedAccount.id) == account_id,
                    or_(
                        col(ConnectedAccount.last_used_at).is_(None),
                        col(ConnectedAccount.last_used_at) < now - LAST_USED_RESOLUTION,
                    ),
                )
                .values(last_used_at=now)
            )
    return True
