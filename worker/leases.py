"""Calls whose worker stopped: a `running` call whose lease expired is taken back to run
again (idempotent, attempts left) or ended, `outcome_unknown` for a POST or PATCH without an
Idempotency-Key, since the upstream may already have acted on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import col, select

from models.calls.states import CALLS, CallStatus
from models.catalog.apps import RetrySpec
from models.db.engine import session_scope
from models.db.tables import CallAttempt, FunctionCall
from models.webhooks.outbox import enqueue_deliveries
from worker.calls.retry import may_resend, policy_for
from worker.runtime import Runtime


def _attempts_allowed(rt: Runtime, call: FunctionCall) -> int:
    """The call's own max_attempts, layered as its retries are (operator, app, call)."""
    app = rt.catalog.get(call.app)
    retry = (call.options or {}).get("retry")
    return policy_for(
        rt.rules.retry_policy,
        app.retry if app else RetrySpec(),
        retry if isinstance(retry, dict) else None,
    ).max_attempts


def recover_leases(rt: Runtime, now: datetime, limit: int) -> tuple[list[FunctionCall], int]:
    """Calls whose worker stopped: taken back to run again when that is safe and attempts
    are left; else ended, so a call that stops its worker every time cannot loop. Returns
    the calls to publish again and how many were ended; at most `limit` calls a time."""
    recovered: list[FunctionCall] = []
    abandoned = 0
    for call in _expired(rt.engine, now, limit):
        verdict = _verdict(rt, call)
        if not _take_back(rt.engine, call, verdict, now):
            continue
        if verdict.again:
            recovered.append(call)
        else:
            abandoned += 1
    return recovered, abandoned


def _expired(engine: Engine, now: datetime, limit: int) -> list[FunctionCall]:
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(FunctionCall)
                .where(
                    col(FunctionCall.status) == CallStatus.RUNNING,
                    col(FunctionCall.lease_expires_at) < now,
                )
                .limit(limit)
            )
        )


@dataclass(frozen=True)
class _Verdict:
    """What becomes of a call whose lease expired: run `again`, or end with `error`."""

    again: bool
    error: str
    why: str

    @property
    def target(self) -> CallStatus:
        return CallStatus.RETRYING if self.again else CallStatus.FAILED


def _verdict(rt: Runtime, call: FunctionCall) -> _Verdict:
    if not may_resend(call.method, has_idempotency_key=call.idempotency_key is not None):
        return _Verdict(
            False,
            "outcome_unknown",
            "the worker running this call stopped; the upstream may have received it, so "
            "it was not sent again",
        )
    spent = call.attempt_count >= _attempts_allowed(rt, call)
    return _Verdict(
        not spent,
        "lease_expired",
        f"the worker running this call stopped on each of its {call.attempt_count} attempts",
    )


def _take_back(engine: Engine, call: FunctionCall, verdict: _Verdict, now: datetime) -> bool:
    """Move the call from `running` on the attempt its worker claimed, and record that
    attempt as lost; False if it is no longer there (it was recorded meanwhile)."""
    again = verdict.again
    with session_scope(engine) as session:
        taken = session.exec(
            CALLS.update(
                FunctionCall,
                verdict.target,
                col(FunctionCall.id) == call.id,
                col(FunctionCall.attempt_count) == call.attempt_count,
                current=CallStatus.RUNNING,
            ).values(
                lease_expires_at=None,
                next_attempt_at=now if again else None,
                finished_at=None if again else now,
                error=None if again else verdict.error,
                error_message=None if again else verdict.why,
            )
        ).rowcount
        if taken != 1:
            return False
        if not again:
            enqueue_deliveries(session.connection(), [call.id], now, published=False)
        session.add(
            CallAttempt(
                call_id=call.id,
                number=call.attempt_count,
                started_at=call.started_at or now,
                duration_ms=0,
                error="lease_expired",
                error_message="the worker running this call stopped before recording it",
                decision="retry now: idempotent" if again else f"give up: {verdict.error}",
            )
        )
    return True
