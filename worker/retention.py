"""Retention: finished calls older than PASSTHRU_RETENTION_DAYS go, with their attempts,
webhook deliveries and Idempotency-Keys.

On Postgres (migration 0013) a whole day goes at once: each day's pair of partitions
(models/db/partitions.py) whose every call is older than the cutoff and final is dropped;
one with a call not yet final waits, logged, until it ends (every call ends by its deadline).
The rows that are not in a day's partition (the table before 0013, the default partition),
and every call on SQLite, are deleted a few hundred at a time (short transactions, so the
log stays writable while a large backlog of old calls goes)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    TableClause,
    and_,
    column,
    delete,
    func,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy.exc import OperationalError

from models.calls.states import FINAL
from models.db.ids import first_id_at
from models.db.partitions import Partition, default_name, partitioned, partitions
from models.db.tables import (
    UNFINISHED_SQL,
    CallAttempt,
    CallIdempotency,
    ConnectSession,
    FunctionCall,
    WebhookAttempt,
    WebhookDelivery,
)

log = logging.getLogger("passthru.retention")

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]
_keys = CallIdempotency.__table__  # type: ignore[attr-defined]
_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_webhook_attempts = WebhookAttempt.__table__  # type: ignore[attr-defined]
_links = ConnectSession.__table__  # type: ignore[attr-defined]
RETENTION_BATCH = 500
# One run deletes at most this many calls row by row; the next run goes on.
MAX_PER_RUN = 50_000
# How long dropping a day waits for the lock on the tables (queries under way finish first);
# past it, the next run tries again.
DROP_LOCK_TIMEOUT = "5s"


def purge(engine: Engine, now: datetime, days: float, batch: int = RETENTION_BATCH) -> int:
    """Delete finished calls created before `now - days`; return how many went (a dropped
    day counts the calls Postgres' statistics say it held)."""
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    with engine.connect() as conn:
        whole_days = partitioned(conn)
    if not whole_days:
        total = _purge_rows(engine, _calls, cutoff, batch, MAX_PER_RUN)
    else:
        total, deleted = drop_days(engine, cutoff), 0
        for name in ("function_call_legacy", default_name("function_call")):
            deleted += _purge_rows(engine, _partition(name), cutoff, batch, MAX_PER_RUN - deleted)
        total += deleted
    if total:
        log.info("retention: %d calls older than %g days deleted", total, days)
    return total


def _partition(name: str) -> TableClause:
    return table(name, column("id"), column("created_at"), column("status"))


def _purge_rows(
    engine: Engine, source: TableClause, cutoff: datetime, batch: int, most: int
) -> int:
    """Finished calls of `source` (the calls, or one partition of them) created before
    `cutoff`, `batch` at a time, at most `most`."""
    total = 0
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql" and source is not _calls:
            exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": source.name}).scalar()
            if exists is None:
                return 0
    while total < most:
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(source.c.id)
                    .where(
                        source.c.created_at < cutoff,
                        source.c.status.in_([s.value for s in FINAL]),
                    )
                    .order_by(source.c.id)
                    .limit(batch)
                ).scalars()
            )
            if not ids:
                break
            deliveries = select(_deliveries.c.id).where(_deliveries.c.call_id.in_(ids))
            conn.execute(
                delete(_webhook_attempts).where(_webhook_attempts.c.delivery_id.in_(deliveries))
            )
            conn.execute(delete(_deliveries).where(_deliveries.c.call_id.in_(ids)))
            conn.execute(delete(_keys).where(_keys.c.call_id.in_(ids)))
            conn.execute(delete(_attempts).where(_attempts.c.call_id.in_(ids)))
            conn.execute(delete(_calls).where(_calls.c.id.in_(ids)))
        total += len(ids)
    return total


def drop_days(engine: Engine, cutoff: datetime) -> int:
    """Postgres: drop each pair of partitions whose ids all come before `cutoff` and whose
    calls are all final; return the calls they held (as counted by the statistics)."""
    bound = first_id_at("fc", cutoff)
    with engine.connect() as conn:
        old = [p for p in partitions(conn, "function_call") if p.upper and p.upper <= bound]
        twins = {(p.lower, p.upper): p.name for p in partitions(conn, "call_attempt")}
    total = 0
    for day in old:
        with engine.connect() as conn:
            waiting = conn.execute(
                select(func.count())
                .select_from(table(day.name, column("status")))
                .where(text(UNFINISHED_SQL))
            ).scalar_one()
        if waiting:
            log.warning("retention: %s waits for its %d unfinished calls", day.name, waiting)
            continue
        _delete_hanging(engine, day)
        total += _drop(engine, day, twins.get((day.lower, day.upper)))
    return total


def _in(day: Partition, key: ColumnElement[str]) -> ColumnElement[bool]:
    """`key` (a call id) falls in `day`'s range."""
    upper = key < day.upper
    return upper if day.lower is None else and_(key >= day.lower, upper)


# Rows that hang off a day's calls (deliveries, their attempts, keys), deleted in batches
# of this many before the day is dropped.
HANGING_BATCH = 5_000


def _delete_hanging(engine: Engine, day: Partition) -> None:
    """The webhook deliveries (with their attempts) and Idempotency-Keys of `day`'s calls:
    those tables are not partitioned."""
    deliveries = select(_deliveries.c.id).where(_in(day, _deliveries.c.call_id))
    key = tuple_(_keys.c.tenant_id, _keys.c.idempotency_key)
    keys = select(_keys.c.tenant_id, _keys.c.idempotency_key).where(_in(day, _keys.c.call_id))
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(deliveries.limit(HANGING_BATCH)).scalars())
            if ids:
                conn.execute(
                    delete(_webhook_attempts).where(_webhook_attempts.c.delivery_id.in_(ids))
                )
                conn.execute(delete(_deliveries).where(_deliveries.c.id.in_(ids)))
            gone = conn.execute(delete(_keys).where(key.in_(keys.limit(HANGING_BATCH)))).rowcount
        if not ids and not gone:
            return


def _drop(engine: Engine, day: Partition, attempts: str | None) -> int:
    """Drop `day` and its attempts' partition, waiting DROP_LOCK_TIMEOUT at most for the
    lock; returns the calls it held (statistics), 0 if the lock was not had."""
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
            held = _estimate(conn, day.name)
            tables = ", ".join(t for t in (attempts, day.name) if t)
            conn.execute(text(f"DROP TABLE {tables}"))
    except OperationalError as exc:
        log.warning("retention: %s not dropped (%s); next run", day.name, type(exc.orig).__name__)
        return 0
    log.info("retention: partition %s dropped (about %d calls)", day.name, held)
    return held


def _estimate(conn: Connection, name: str) -> int:
    rows = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": name}
    ).scalar()
    return max(int(rows or 0), 0)


# Links of POST /connect-sessions are deleted this long after they expired (their page then
# says "unknown link" instead of "expired").
CONNECT_LINKS_KEPT = timedelta(hours=1)


def purge_connect_links(engine: Engine, now: datetime) -> int:
    """Delete connect links expired more than CONNECT_LINKS_KEPT ago; return how many went."""
    with engine.begin() as conn:
        gone = conn.execute(
            delete(_links).where(_links.c.expires_at < now - CONNECT_LINKS_KEPT)
        ).rowcount
    if gone:
        log.info("retention: %d expired connect links deleted", gone)
    return int(gone or 0)
