"""Store calls' results with their attempts, webhook events and account use: one
transaction for many calls, and only for the calls still this worker's."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, insert, or_, update
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlmodel import col

from models.broker import Publisher
from models.calls.states import CALLS, CallStatus
from models.db.tables import CallAttempt, ConnectedAccount, FunctionCall
from models.keys import QUEUE_INTERACTIVE
from models.machine import by_key
from models.webhooks.outbox import FINISHED_COLUMNS, enqueue_deliveries
from worker.calls.results import Attempted, failed
from worker.calls.store_many import store_many
from worker.calls.store_one import OneStatement, remember_touched, touch_before
from worker.calls.store_rows import RESULTS, result_values, store_row

log = logging.getLogger("passthru.worker")

# `last_used_at` is written at most this often, so busy accounts are not a hot row.
LAST_USED_RESOLUTION = timedelta(seconds=60)

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]


# Where a call handed back unsent goes.
HANDED_BACK = (CallStatus.QUEUED, CallStatus.RETRYING)


def still_ours(*to: CallStatus) -> tuple[ColumnElement[bool], ...]:
    """The call is still this worker's: running (a status each of `to` may follow), on the
    attempt it claimed. Each row's own status is checked against CALLS as it is built."""
    return (
        _calls.c.id == bindparam("b_id"),
        CALLS.guard(by_key(_calls.c.status), to, current=CallStatus.RUNNING),
        _calls.c.attempt_count == bindparam("b_attempt"),
    )


_STORE = (
    _calls.update()
    .where(*still_ours(*RESULTS))
    .values(**result_values(lambda column, name: bindparam(name, type_=_calls.c[column].type)))
)
_STORE_RETURNING = _STORE.returning(*FINISHED_COLUMNS)
_ONE_STATEMENT = OneStatement(_STORE)


def store_results(
    engine: Engine,
    items: Sequence[Attempted],
    now: datetime,
    touched: dict[str, datetime] | None = None,
    deliveries: list[str] | None = None,
) -> list[str]:
    """Store each result whose call is still ours (running, same attempt); return their ids.

    On Postgres, a group is one statement for the calls and their attempts
    (worker/calls/store_many.py), and one interactive result one statement in all
    (worker/calls/store_one.py); on SQLite, an executemany UPDATE and a multi-row INSERT.
    `touched` remembers when this process last wrote each account's `last_used_at`, to skip
    writes within LAST_USED_RESOLUTION. The webhook events of calls that finished are
    written in the same transaction; their ids are added to `deliveries`, to publish. A call
    taken back meanwhile (its lease expired and the sweeper moved it) gets no result and no
    attempt: on SQLite, when the UPDATE's count says so, the group is stored row by row to
    find which.
    """
    if not items:
        return []
    rows = [store_row(item, now) for item in items]
    if _stored_in_one_statement(engine, items, rows, now, touched, deliveries):
        return [items[0].call_id]
    with engine.connect() as conn, conn.begin() as tx:
        if len(rows) == 1:  # the UPDATE returns what its webhook events need: one round trip
            found = conn.execute(_STORE_RETURNING, rows[0]).all()
            if found:
                _store_alongside(conn, items, now, touched, deliveries, found)
            return [item.call_id for item in items] if found else []
        if conn.dialect.name == "postgresql":  # one statement, the attempts with it
            found = store_many(conn, items, rows)
            ours = {row[0] for row in found}
            kept = [item for item in items if item.call_id in ours]
            _events_and_use(conn, kept, now, touched, deliveries, found)
            return [item.call_id for item in kept]
        if conn.execute(_STORE, rows).rowcount == len(rows):
            _store_alongside(conn, items, now, touched, deliveries)
            return [item.call_id for item in items]
        tx.rollback()  # some call is no longer ours: store them one by one
    stored: list[Attempted] = []
    with engine.begin() as conn:
        for item, row in zip(items, rows, strict=True):
            if conn.execute(_STORE, row).rowcount == 1:
                stored.append(item)
        _store_alongside(conn, stored, now, touched, deliveries)
    return [item.call_id for item in stored]


def _stored_in_one_statement(
    engine: Engine,
    items: Sequence[Attempted],
    rows: list[dict[str, Any]],
    now: datetime,
    touched: dict[str, datetime] | None,
    deliveries: list[str] | None,
) -> bool:
    """A waiting caller's result (one interactive call, Postgres): one statement, no
    transaction around it (worker/calls/store_one.py). False when it does not apply or the
    call was not stored (no longer ours, or in a batch after all): the transaction of
    `store_results` then decides."""
    if len(items) != 1 or items[0].lane != QUEUE_INTERACTIVE:
        return False
    if engine.dialect.name != "postgresql":
        return False
    item = items[0]
    before = touch_before(item.account_id, now, touched, LAST_USED_RESOLUTION)
    stored, event = _ONE_STATEMENT.run(engine, item, rows[0], now, before)
    if not stored:
        return False
    if before is not None and item.account_id is not None:
        remember_touched(touched, [item.account_id], now)
    if event is not None and deliveries is not None:
        deliveries.append(event)
    return True


def _store_alongside(
    conn: Connection,
    items: Sequence[Attempted],
    now: datetime,
    touched: dict[str, datetime] | None,
    deliveries: list[str] | None = None,
    stored: Sequence[Any] | None = None,  # the calls' rows as FINISHED_COLUMNS, if read
) -> None:
    if not items:
        return
    conn.execute(insert(_attempts), [item.attempt_row() for item in items])
    _events_and_use(conn, items, now, touched, deliveries, stored)


def _events_and_use(
    conn: Connection,
    items: Sequence[Attempted],
    now: datetime,
    touched: dict[str, datetime] | None,
    deliveries: list[str] | None,
    stored: Sequence[Any] | None,
) -> None:
    """The webhook events of the stored calls that finished, and their accounts' use."""
    if not items:
        return
    final = [i.call_id for i in items if i.result.status.is_final]
    finals = set(final)
    finished = None if stored is None else [row for row in stored if row[0] in finals]
    new_events = enqueue_deliveries(conn, final, now, finished=finished)
    if deliveries is not None:
        deliveries.extend(new_events)
    account_ids = [
        a
        for a in sorted({i.account_id for i in items if i.account_id is not None})
        if touch_before(a, now, touched, LAST_USED_RESOLUTION) is not None
    ]
    remember_touched(touched, account_ids, now)
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


# A value the database (or its driver's encoder) refuses, as opposed to the database being
# away: StatementError wraps most; psycopg's executemany lets the JSON encoder's own errors
# through.
_REFUSED = (StatementError, TypeError, ValueError)
_AWAY = (OperationalError, InterfaceError)


def _why(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return type(orig or exc).__name__


def store_safely(
    engine: Engine,
    items: list[Attempted],
    clock: Callable[[], datetime],
    touched: dict[str, datetime],
    deliveries: list[str],
) -> list[Attempted]:
    """`store_results`; if the database refuses a value (not the database being away: that
    raises, and the lease brings the calls back), each call alone, a refused result replaced
    by a failure that says so: no answer, however odd, leaves its call unfinished. Returns
    what was stored, as it was stored."""
    try:
        stored = set(store_results(engine, items, clock(), touched, deliveries))
        return [item for item in items if item.call_id in stored]
    except _REFUSED as exc:
        if isinstance(exc, _AWAY):
            raise
        log.warning(
            "a group of %d results was refused (%s); storing them one by one", len(items), _why(exc)
        )
    return [
        kept
        for item in items
        if (kept := _store_one(engine, item, clock, touched, deliveries)) is not None
    ]


def _store_one(
    engine: Engine,
    item: Attempted,
    clock: Callable[[], datetime],
    touched: dict[str, datetime],
    deliveries: list[str],
) -> Attempted | None:
    try:
        return item if store_results(engine, [item], clock(), touched, deliveries) else None
    except _REFUSED as exc:
        if isinstance(exc, _AWAY):
            raise
        log.error("call %s: its result was refused by the database (%s)", item.call_id, _why(exc))
    refused = replace(
        item, result=failed("unstorable_answer", "the upstream's answer could not be stored")
    )
    return refused if store_results(engine, [refused], clock(), touched, deliveries) else None


def publish_or_forget(
    engine: Engine,
    publisher: Publisher,
    call_ids: Sequence[str],
    lane: str,
    countdown_s: float,
    tenant_of: Mapping[str, str],
    first: bool = False,
) -> None:
    """Publish waiting calls already stored as published (`published_at` set with their
    result, in the same transaction; `first`: ahead of their tenants' other bulk calls); if
    the broker refuses, mark them unpublished, so the sweeper publishes them when due
    instead of waiting PASSTHRU_REPUBLISH_AFTER_S for a message that does not exist."""
    if not call_ids or publisher.publish_calls(call_ids, lane, countdown_s, tenant_of, first):
        return
    try:
        with engine.begin() as conn:
            conn.execute(
                update(_calls)
                .where(_calls.c.id.in_(list(call_ids)), _calls.c.status.in_(HANDED_BACK))
                .values(published_at=None)
            )
    except (OperationalError, InterfaceError) as exc:
        log.warning(
            "%d call(s) not published and not marked so (%s): published again after "
            "PASSTHRU_REPUBLISH_AFTER_S",
            len(call_ids),
            type(exc).__name__,
        )
