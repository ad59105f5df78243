"""Counting a tenant's calls not finished, for PASSTHRU_TENANT_MAX_OPEN_CALLS
(`api/quotas.py`): one query on the partial index that holds only unfinished calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Select, column, func, literal_column, select, text

from models.db.engine import read_connection
from models.db.tables import UNFINISHED_SQL, FunctionCall

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
# The partial index that holds only unfinished calls (models/db/tables.py).
OPEN_INDEX = "ix_call_tenant_open"

# (tenant id, cap) -> the tenant's calls not finished, counted up to cap + 1.
OpenCallsCounter = Callable[[str, int], int]


def open_calls_counter(engine: Engine) -> OpenCallsCounter:
    """One query on the partial index of unfinished calls, reading at most `cap + 1` rows.
    The predicate is written as the index's is: a database uses a partial index only for
    a WHERE it can match to it (SQLite: literally, never through bound parameters)."""

    dialect = engine.dialect.name

    def count(tenant_id: str, cap: int) -> int:
        with read_connection(engine) as conn:
            return int(conn.execute(open_calls_query(tenant_id, cap, dialect)).scalar_one())

    return count


def open_calls_query(tenant_id: str, cap: int, dialect: str) -> Select[Any]:
    """On SQLite the index is named (`INDEXED BY`): with no statistics, its planner ranks
    every index that leads with tenant_id alike, and took whichever was made last."""
    source = text(f"function_call INDEXED BY {OPEN_INDEX}") if dialect == "sqlite" else _calls
    rows = (
        select(literal_column("1"))
        .select_from(source)
        .where(column("tenant_id") == tenant_id, text(UNFINISHED_SQL))
        .limit(cap + 1)
        .subquery()
    )
    return select(func.count()).select_from(rows)
