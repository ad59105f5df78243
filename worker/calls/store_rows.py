"""What a stored result writes on its call's row: the columns, their values as parameters of
one store row, and the statuses a result moves a call to. The statements that store results
(worker/calls/store.py, store_one.py, store_many.py) all build their SET list from here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func

from models.calls.states import CALLS, CallStatus
from models.db.tables import FunctionCall
from worker.calls.results import Attempted

_calls = FunctionCall.__table__  # type: ignore[attr-defined]

# What an attempt ends with.
RESULTS = (CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.RETRYING)

# Each column a result writes, and the name of its value in a store row (`store_row`).
RESULT_COLUMNS = {
    "status": "b_status",
    "network_code": "b_network_code",
    "output": "b_output",
    "output_truncated": "b_output_truncated",
    "response_headers": "b_headers",
    "error": "b_error",
    "error_message": "b_error_message",
    "duration_ms": "b_duration_ms",
    "finished_at": "b_finished_at",
    "next_attempt_at": "b_next_attempt_at",
    "published_at": "b_published_at",
}


def result_values(value_of: Callable[[str, str], Any]) -> dict[str, Any]:
    """The SET list of a stored result, each column's value as `value_of(column, name in a
    store row)` gives it (a parameter, or a column of rows unnested from arrays)."""
    values = {column: value_of(column, name) for column, name in RESULT_COLUMNS.items()}
    # A retry published with a countdown counts as published for its time; a longer wait
    # keeps the old value, so the sweeper publishes it when due.
    values["published_at"] = func.coalesce(values["published_at"], _calls.c.published_at)
    return {**values, "lease_expires_at": None, "rate_wait": None}


def store_row(item: Attempted, now: datetime) -> dict[str, Any]:
    """One result's values: the call's id and attempt (`b_id`, `b_attempt`), then each of
    RESULT_COLUMNS. The new status is checked against the calls' state machine here."""
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
