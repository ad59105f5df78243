"""Calls whose worker stopped: a `running` call whose worker process's heartbeat ended
(worker/liveness.py), or whose attempt ran past its deadline, is taken back to run again
(idempotent, attempts left) or ended, `outcome_unknown` for a POST or PATCH without an
Idempotency-Key, since the upstream may already have acted on it. The lost attempt is
recorded: `worker_lost` or `lease_expired`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, or_, tuple_
from sqlmodel import col, select

from models.calls.states import CALLS, CallStatus
from models.catalog.spec import RetrySpec
from models.db.engine import session_scope
from models.db.tables import CallAttempt, FunctionCall, WorkerProcess
from models.webhooks.outbox import enqueue_deliveries
from worker import metrics
from worker.calls.retry import may_resend, policy_for
from worker.runtime import Runtime

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]


def _attempts_allowed(rt: Runtime, call: FunctionCall) -> int:
    """The call's own max_attempts, layered as its retries are (operator, app, call)."""
    app = rt.catalog.get(call.app)
    retry = (call.options or {}).get("retry")
    return policy_for(
        rt.rules.retry_policy,
        app.retry if app else RetrySpec(),
        retry if isinstance(retry, dict) else None,
    ).max_attempts


# A sweep takes back at most this many pages of calls (a dead process held a few thousand
# at most; more wait for the next sweep).
MAX_PAGES = 20


def recover_leases(rt: Runtime, now: datetime, limit: int) -> tuple[list[FunctionCall], int]:
    """Calls whose worker stopped: taken back to run again when that is safe and attempts
    are left; else ended, so a call that stops its worker every time cannot loop. Returns
    the calls to publish again and how many were ended; read `limit` calls at a time."""
    recovered: list[FunctionCall] = []
    abandoned = 0
    for _ in range(MAX_PAGES):
        page = _expired(rt.engine, now, limit)
        again, ended = _recover(rt, page, now)
        recovered += again
        abandoned += ended
        if len(page) < limit:
            break
    return recovered, abandoned


def _recover(
    rt: Runtime, calls: list[FunctionCall], now: datetime
) -> tuple[list[FunctionCall], int]:
    """Take a page of calls back in one transaction: one guarded UPDATE per verdict, then
    their lost attempts and, for the calls ended, their webhook events."""
    groups: dict[_Verdict, list[FunctionCall]] = {}
    for call in calls:
        groups.setdefault(_verdict(rt, call, now), []).append(call)
    recovered: list[FunctionCall] = []
    abandoned = 0
    with rt.engine.begin() as conn:
        for verdict, group in groups.items():
            taken = _take_back(conn, group, verdict, now)
            if verdict.again:
                recovered += taken
            else:
                abandoned += len(taken)
            outcome = "retried" if verdict.again else "ended"
            metrics.LEASES_RECOVERED.labels(verdict.lost, outcome).inc(len(taken))
    return recovered, abandoned


def _expired(engine: Engine, now: datetime, limit: int) -> list[FunctionCall]:
    """Running calls past their deadline, or held by a process that is not alive: its row
    expired, or gone (the sweeper forgot it, or it stopped). Only running calls are read,
    so the cost follows the calls in flight, never the backlog."""
    alive = select(WorkerProcess.id).where(
        col(WorkerProcess.id) == col(FunctionCall.claimed_by),
        col(WorkerProcess.expires_at) >= now,
    )
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(FunctionCall)
                .where(
                    col(FunctionCall.status) == CallStatus.RUNNING,
                    or_(
                        col(FunctionCall.lease_expires_at) < now,
                        col(FunctionCall.claimed_by).is_not(None) & ~alive.exists(),
                    ),
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
    lost: str  # what became of the attempt: `worker_lost` or `lease_expired`

    @property
    def target(self) -> CallStatus:
        return CallStatus.RETRYING if self.again else CallStatus.FAILED


def _verdict(rt: Runtime, call: FunctionCall, now: datetime) -> _Verdict:
    deadline = call.lease_expires_at
    lost = "lease_expired" if deadline is not None and deadline < now else "worker_lost"
    if not may_resend(call.method, has_idempotency_key=call.idempotency_key is not None):
        return _Verdict(
            False,
            "outcome_unknown",
            "the worker running this call stopped; the upstream may have received it, so "
            "it was not sent again",
            lost,
        )
    spent = call.attempt_count >= _attempts_allowed(rt, call)
    return _Verdict(
        not spent,
        "lease_expired",
        f"the worker running this call stopped on each of its {call.attempt_count} attempts",
        lost,
    )


_LOST = {
    "worker_lost": "the worker process running this call stopped (its heartbeat ended) "
    "before recording it",
    "lease_expired": "the attempt ran past its deadline without being recorded",
}


def _take_back(
    conn: Connection, calls: list[FunctionCall], verdict: _Verdict, now: datetime
) -> list[FunctionCall]:
    """Move the calls from `running`, each on the attempt its worker claimed, and record
    those attempts as lost; returns the calls moved (not one recorded meanwhile)."""
    again = verdict.again
    claimed = tuple_(_calls.c.id, _calls.c.attempt_count).in_(
        [(c.id, c.attempt_count) for c in calls]
    )
    moved = CALLS.update(_calls, verdict.target, claimed, current=CallStatus.RUNNING).values(
        lease_expires_at=None,
        next_attempt_at=now if again else None,
        finished_at=None if again else now,
        error=None if again else verdict.error,
        error_message=None if again else verdict.why,
    )
    ids = {row.id for row in conn.execute(moved.returning(_calls.c.id))}
    taken = [c for c in calls if c.id in ids]
    if not taken:
        return []
    if not again:
        enqueue_deliveries(conn, [c.id for c in taken], now, published=False)
    decision = "retry now: idempotent" if again else f"give up: {verdict.error}"
    conn.execute(
        insert(_attempts),
        [
            {
                "call_id": c.id,
                "number": c.attempt_count,
                "started_at": c.started_at or now,
                "duration_ms": 0,
                "error": verdict.lost,
                "error_message": _LOST[verdict.lost],
                "decision": decision,
            }
            for c in taken
        ],
    )
    return taken
