"""A group of results stored in one statement on Postgres: the calls' UPDATE reads its rows
from arrays (one per column, unnested), and their attempts' INSERT is a data-modifying CTE
that reads the calls the UPDATE stored. It replaces an UPDATE per call and an INSERT per
attempt (an executemany sends each row as a statement of its own): half the database's CPU
per stored result (docs/performance.md).

It returns what the UPDATE stored, as FINISHED_COLUMNS: a call taken back meanwhile (its
lease expired and the sweeper moved it) is simply not among them, and gets no attempt.
The caller runs it inside the transaction that also writes the webhook events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, any_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY

from models.calls.states import CALLS, CallStatus
from models.db.tables import CallAttempt, FunctionCall
from models.machine import by_key
from models.webhooks.outbox import FINISHED_COLUMNS
from worker.calls.results import Attempted
from worker.calls.store_rows import RESULT_COLUMNS, RESULTS, result_values

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]

# The attempt's row but its id, which the table numbers.
_ATTEMPT_COLUMNS = tuple(c.name for c in _attempts.c if c.name != "id")


def _arrays(table: Any, columns: dict[str, str], alias: str) -> Any:
    """`unnest(:a, :b, ...) AS alias(column, ...)`: one array parameter per column (named
    as in `columns`), typed as its column, so Postgres reads one row per element."""
    params = [
        bindparam(name, type_=ARRAY(table.c[column].type)) for column, name in columns.items()
    ]
    return func.unnest(*params).table_valued(*columns).render_derived(name=alias)


_RESULTS = _arrays(_calls, {"id": "b_id", "attempt_count": "b_attempt", **RESULT_COLUMNS}, "v")
_ATTEMPTS = _arrays(_attempts, {c: f"a_{c}" for c in _ATTEMPT_COLUMNS}, "a")


def _statement() -> Any:
    *call_columns, endpoint_url = FINISHED_COLUMNS
    stored = (
        _calls.update()
        .where(
            _calls.c.id == _RESULTS.c.id,
            CALLS.guard(by_key(_calls.c.status), RESULTS, current=CallStatus.RUNNING),
            _calls.c.attempt_count == _RESULTS.c.attempt_count,
            # Names the day partitions to read: a join alone is not pruned when planned.
            # One array, not a parameter per id, as in the claim (worker/calls/claim.py).
            _calls.c.id == any_(bindparam("b_id", type_=ARRAY(_calls.c.id.type))),
        )
        .values(**result_values(lambda column, _: _RESULTS.c[column]))
        .returning(*call_columns, endpoint_url.label("endpoint_url"))
        .cte("stored")
    )
    attempts = insert(_attempts).from_select(
        list(_ATTEMPT_COLUMNS),
        select(*[_ATTEMPTS.c[c] for c in _ATTEMPT_COLUMNS]).join_from(
            _ATTEMPTS, stored, stored.c.id == _ATTEMPTS.c.call_id
        ),
    )
    return select(*stored.c).add_cte(attempts.cte("attempts"))


_STORE_MANY = _statement()  # built once: building a statement costs more CPU than running it


def store_many(
    conn: Connection, items: Sequence[Attempted], rows: Sequence[dict[str, Any]]
) -> Sequence[Any]:
    """Store each result of `items` (`rows`: their store rows, worker/calls/store_rows.py)
    whose call is still ours, with its attempt; return the stored calls' FINISHED_COLUMNS."""
    params: dict[str, Any] = {name: [row[name] for row in rows] for name in rows[0]}
    attempts = [item.attempt_row() for item in items]
    params.update({f"a_{c}": [a[c] for a in attempts] for c in _ATTEMPT_COLUMNS})
    return conn.execute(_STORE_MANY, params).all()
