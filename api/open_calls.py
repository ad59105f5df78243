"""Counting a tenant's calls not finished, for PASSTHRU_TENANT_MAX_OPEN_CALLS
(`api/quotas.py`): one query on the partial index that holds only unfinished calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Select, func, select, text

from models.db.tables import UNFINISHED_SQL, FunctionCall

_calls = FunctionCall.__table__  # type: ignore[attr-defined]

# (tenant id, cap) -> the tenant's calls not finished, counted up to cap + 1.
OpenCallsCounter = Callable[[str, int], int]


def open_calls_counter(engine: Engine) -> OpenCallsCounter:
    """One query on the partial index of unfinished calls, reading at most `cap + 1` rows.
    The predicate is written as the index's is: a database uses a partial index only for
    a WHERE it can match to it (SQLite: literally, never through bound parameters)."""

    def count(tenant_id: str, cap: int) -> int:
        with engine.connect() as conn:
            return int(conn.execute(open_calls_query(tenant_id, cap)).scalar_one())

    return count


def open_calls_query(tenant_id: str, cap: int) -> Select[Any]:
    rows = (
        select(_calls.c.id)
        .where(_calls.c.tenant_id == tenant_id, text(UNFINISHED_SQL))
        .limit(cap + 1)
        .subquery()
    )
    return select(func.count()).select_from(rows)
