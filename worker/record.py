"""Write calls' results and their attempts: one transaction for many calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    bindparam,
    case,
    func,
    insert,
    or_,
    update,
)
from sqlmodel import col

from models.calls.states import CALLS, CallStatus
from models.db.engine import UTCDateTime
from models.db.tables import CallAttempt, ConnectedAccount, FunctionCall
from models.keys import QUEUE_INTERACTIVE
from models.webhooks.outbox import enqueue_deliveries
from worker.admission import Park

# `last_used_at` is written at most this often, so busy accounts are not a hot row.
LAST_USED_RESOLUTION = timedelta(seconds=60)

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]


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
    next_attempt_at: datetime | None = None  # for `retrying`
    countdown_s: float | None = None  # set when the retry is published with a countdown
    rate_wait_ms: int | None = None  # how long rate limits held this attempt back
    rate_wait_reason: str | None = None


@dataclass(frozen=True)
class Finished:
    """One claimed call and the result of its attempt."""

    call_id: str
    account_id: str | None
    attempt: int
    started_at: datetime
    result: Result
    lane: str = QUEUE_INTERACTIVE
    tenant_id: str | None = None  # for the log line
    app: str | None = None


# What an attempt ends with, and where a call handed back unsent goes.
RESULTS = (CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.RETRYING)
HANDED_BACK = (CallStatus.QUEUED, CallStatus.RETRYING)


def _still_ours(*to: CallStatus) -> tuple[ColumnElement[bool], ...]:
    """The call is still this worker's: running (a status each of `to` may follow), on the
    attempt it claimed. Each row's own status is checked against CALLS as it is built."""
    return (
        _calls.c.id == bindparam("b_id"),
        CALLS.guard(_calls.c.status, to, current=CallStatus.RUNNING),
        _calls.c.attempt_count == bindparam("b_attempt"),
    )


_STORE = (
    _calls.update()
    .where(*_still_ours(*RESULTS))
    .values(
        status=bindparam("b_status"),
        network_code=bindparam("b_network_code"),
        output=bindparam("b_output"),
        output_truncated=bindparam("b_output_truncated"),
        response_headers=bindparam("b_headers"),
        error=bindparam("b_error"),
        error_message=bindparam("b_error_message"),
        duration_ms=bindparam("b_duration_ms"),
        lease_expires_at=None,
        finished_at=bindparam("b_finished_at"),
        next_attempt_at=bindparam("b_next_attempt_at", type_=UTCDateTime()),
        # A retry published with a countdown counts as published for its time; a longer
        # wait keeps the old value, so the sweeper publishes it when due.
        published_at=func.coalesce(
            bindparam("b_published_at", type_=UTCDateTime()), _calls.c.published_at
        ),
        rate_wait=None,
    )
)


def _row(item: Finished, now: datetime) -> dict[str, Any]:
    r = item.result
    return {
        "b_id": item.call_id,
        "b_attempt": item.attempt,
        "b_status": CALLS.check(CallStatus.RUNNING, r.status),
        "b_network_code": r.network_code,
        "b_output": r.output,
        "b_output_truncated": r.output_truncated,
        "b_headers": r.headers,
        "b_error": r.error,
        "b_error_message": r.error_message,
        "b_duration_ms": r.duration_ms,
        "b_finished_at": now if r.status.is_final else None,
        "b_next_attempt_at": r.next_attempt_at,
        "b_published_at": r.next_attempt_at if r.countdown_s is not None else None,
    }


def record(
    engine: Engine,
    items: Sequence[Finished],
    now: datetime,
    touched: dict[str, datetime] | None = None,
    deliveries: list[str] | None = None,
) -> list[str]:
    """Store each result whose call is still ours (running, same attempt); return their ids.

    Normally one executemany UPDATE, one multi-row INSERT and one commit. `touched`
    remembers when this process last wrote each account's `last_used_at`, to skip writes
    within LAST_USED_RESOLUTION. The webhook events of calls that finished are written in
    the same transaction; their ids are added to `deliveries`, to publish. If any call was
    taken back meanwhile (its lease expired and the sweeper moved it), the batch is stored
    row by row so that only the calls still ours get their result and attempt.
    """
    if not items:
        return []
    rows = [_row(item, now) for item in items]
    with engine.connect() as conn, conn.begin() as tx:
        if conn.execute(_STORE, rows).rowcount == len(rows):
            _finish(conn, items, now, touched, deliveries)
            return [item.call_id for item in items]
        tx.rollback()  # some call is no longer ours: store them one by one
    stored: list[Finished] = []
    with engine.begin() as conn:
        for item, row in zip(items, rows, strict=True):
            if conn.execute(_STORE, row).rowcount == 1:
                stored.append(item)
        _finish(conn, stored, now, touched, deliveries)
    return [item.call_id for item in stored]


def _finish(
    conn: Connection,
    items: Sequence[Finished],
    now: datetime,
    touched: dict[str, datetime] | None,
    deliveries: list[str] | None = None,
) -> None:
    if not items:
        return
    final = [i.call_id for i in items if i.result.status.is_final]
    new_events = enqueue_deliveries(conn, final, now)
    if deliveries is not None:
        deliveries.extend(new_events)
    conn.execute(
        insert(_attempts),
        [
            {
                "call_id": item.call_id,
                "number": item.attempt,
                "started_at": item.started_at,
                "duration_ms": item.result.duration_ms,
                "network_code": item.result.network_code,
                "error": item.result.error,
                "error_message": item.result.error_message,
                "decision": item.result.decision,
                "rate_wait_ms": item.result.rate_wait_ms,
                "rate_wait_reason": (item.result.rate_wait_reason or "")[:200] or None,
            }
            for item in items
        ],
    )
    account_ids = sorted({i.account_id for i in items if i.account_id is not None})
    if touched is not None:
        account_ids = [
            a for a in account_ids if a not in touched or touched[a] < now - LAST_USED_RESOLUTION
        ]
        touched.update(dict.fromkeys(account_ids, now))
    if account_ids:
        conn.execute(
            update(ConnectedAccount)
            .where(
                col(ConnectedAccount.id).in_(account_ids),
                or_(
                    col(ConnectedAccount.last_used_at).is_(None),
                    col(ConnectedAccount.last_used_at) < now - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=now)
        )


_PARK = (
    _calls.update()
    .where(*_still_ours(*HANDED_BACK))
    .values(
        status=bindparam("b_status"),
        attempt_count=_calls.c.attempt_count - 1,
        lease_expires_at=None,
        next_attempt_at=bindparam("b_next_attempt_at", type_=UTCDateTime()),
        rate_wait=bindparam("b_rate_wait", type_=JSON()),
        started_at=case((bindparam("b_first", type_=Boolean()), None), else_=_calls.c.started_at),
        published_at=func.coalesce(
            bindparam("b_published_at", type_=UTCDateTime()), _calls.c.published_at
        ),
    )
)


def park(
    engine: Engine, items: Sequence[Park], now: datetime, *, max_countdown_s: float
) -> set[str]:
    """Hand calls back unsent (not an attempt): `queued` again, or `retrying` after earlier
    attempts, due at their `come_back_at`. Those due within `max_countdown_s` count as
    published for that time (the caller publishes them with a countdown); later ones keep
    their old `published_at`, so the sweeper publishes them when due. Returns the ids that
    were still ours."""
    if not items:
        return set()
    rows: list[dict[str, Any]] = []
    for item in items:
        c = item.claimed
        soon = (item.come_back_at - now).total_seconds() <= max_countdown_s
        rows.append(
            {
                "b_id": c.call.id,
                "b_attempt": c.attempt,
                "b_status": CALLS.check(
                    CallStatus.RUNNING,
                    CallStatus.QUEUED if c.attempt == 1 else CallStatus.RETRYING,
                ),
                "b_next_attempt_at": item.come_back_at,
                "b_rate_wait": item.rate_wait,
                "b_first": c.attempt == 1,
                "b_published_at": item.come_back_at if soon else None,
            }
        )
    ours: set[str] = set()
    with engine.begin() as conn:
        for row in rows:
            if conn.execute(_PARK, row).rowcount == 1:
                ours.add(str(row["b_id"]))
    return ours
