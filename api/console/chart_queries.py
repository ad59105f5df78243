"""The last hour's numbers, aggregated in SQL for one tenant: calls per minute and status
(one GROUP BY over the index `ix_call_tenant_created`), and the upstream latency per app.

Upstream latency is `call_attempt.duration_ms` of the attempts that got an answer from the
upstream (`network_code` set, whatever the code): the time from sending the request to
the end of reading the answer. A rate-limit wait comes before the send and is recorded
apart (`rate_wait_ms`), so it is not in it. Both charts cover the calls *created* in the
window, so each reads a range of the same index.

The percentiles are those of the window's newest SAMPLE answered attempts (of any app), read
in the index's order with a LIMIT, so the work and the memory are bounded however busy the
hour: Postgres computes them with `percentile_cont` over that sample; SQLite has no such
function, so Python sorts the sample and interpolates the same way (`percentile`). In an
hour with more answered attempts than SAMPLE, the counts are the sample's, and an app whose
attempts are all older than it is left out (the page says when the sample was full)."""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import ColumnElement, Engine, Integer, Subquery, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from api.console.chart_geometry import AppLatency, percentile
from models.db.tables import CallAttempt, FunctionCall

# Answered attempts the percentiles are computed from: the window's newest, of any app.
SAMPLE = 20_000

_calls = FunctionCall.__table__.c  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__.c  # type: ignore[attr-defined]
_calls_and_attempts = FunctionCall.__table__.join(CallAttempt.__table__)  # type: ignore[attr-defined]


class epoch_minute(FunctionElement[int]):
    """Whole minutes since 1970-01-01 of a naive UTC timestamp column."""

    type = Integer()
    inherit_cache = True


@compiles(epoch_minute, "sqlite")
def _sqlite_minute(element: epoch_minute, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite stores `YYYY-MM-DD HH:MM:SS.ffffff`; strftime would round the fraction (59.9996
    s is the next minute), so only the first 19 characters, the whole seconds, are read."""
    column = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) / 60)"


@compiles(epoch_minute, "postgresql")
def _postgres_minute(element: epoch_minute, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(floor(extract(epoch FROM {column}) / 60) AS INTEGER)"


def _in_window(tenant_id: str, since: datetime, until: datetime) -> list[ColumnElement[bool]]:
    return [_calls.tenant_id == tenant_id, _calls.created_at >= since, _calls.created_at < until]


def calls_per_minute(
    engine: Engine, tenant_id: str, since: datetime, until: datetime
) -> list[tuple[int, str, int]]:
    """(epoch minute, status, calls) for each minute and status the window holds."""
    minute = epoch_minute(_calls.created_at)
    query = (
        select(minute, _calls.status, func.count())
        .where(*_in_window(tenant_id, since, until))
        .group_by(minute, _calls.status)
    )
    with engine.connect() as connection:
        return [(int(m), str(s), int(n)) for m, s, n in connection.execute(query)]


def _newest_answers(tenant_id: str, since: datetime, until: datetime) -> Subquery:
    """(app, duration_ms) of the window's newest SAMPLE answered attempts: the index's
    range read backwards, each call's attempts found by `ix_call_attempt_call_id`."""
    return (
        select(_calls.app, _attempts.duration_ms)
        .select_from(_calls_and_attempts)
        .where(*_in_window(tenant_id, since, until), _attempts.network_code.is_not(None))
        .order_by(_calls.created_at.desc())
        .limit(SAMPLE)
        .subquery()
    )


def _percentiles_in_sql(engine: Engine, sample: Subquery) -> list[AppLatency]:
    ms = sample.c.duration_ms
    query = (
        select(
            sample.c.app,
            func.count(),
            func.percentile_cont(0.5).within_group(ms),
            func.percentile_cont(0.95).within_group(ms),
        )
        .group_by(sample.c.app)
        .order_by(sample.c.app)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    full = sum(int(row[1]) for row in rows) == SAMPLE
    return [AppLatency(str(a), int(n), float(p50), float(p95), full) for a, n, p50, p95 in rows]


def _percentiles_in_python(engine: Engine, sample: Subquery) -> list[AppLatency]:
    with engine.connect() as connection:
        rows = connection.execute(select(sample.c.app, sample.c.duration_ms)).all()
    full = len(rows) == SAMPLE
    found = []
    for app, group in groupby(sorted((str(a), float(ms)) for a, ms in rows), key=lambda r: r[0]):
        ordered = [ms for _, ms in group]
        p50, p95 = percentile(ordered, 0.5), percentile(ordered, 0.95)
        found.append(AppLatency(app, len(ordered), p50 or 0.0, p95 or 0.0, full))
    return found


def latency_by_app(
    engine: Engine, tenant_id: str, since: datetime, until: datetime
) -> list[AppLatency]:
    """Per app (by name), the answered attempts of the window's calls (the newest SAMPLE
    at most) and their p50 and p95 durations, as `percentile_cont` computes them."""
    sample = _newest_answers(tenant_id, since, until)
    if engine.dialect.name == "postgresql":
        return _percentiles_in_sql(engine, sample)
    return _percentiles_in_python(engine, sample)
