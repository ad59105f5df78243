"""The log's NDJSON export (`GET /function-calls/export`): the calls that pass the log's
filters, newest first, one JSON line each, exactly as `call_out` shows a call.

Read in keyset batches of at most EXPORT_BATCH rows and BATCH_BYTES of lines (one short
query each, streamed from the database STREAM_ROWS rows at a time, and no transaction held
while the client reads), as plain column tuples (no ORM objects, no pydantic models; times
and statuses as the database gives them), serialized by orjson, and handed to the response
in chunks of about CHUNK_BYTES: a streamed response pays a thread hop per chunk, so chunks
are large and few. The byte bound keeps memory flat when outputs are large (each may be up
to PASSTHRU_MAX_RESPONSE_BYTES).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import DateTime, Engine, String, select, type_coerce
from sqlalchemy.types import TypeEngine
from sqlmodel import col

from api.call_log import LogFilter, log_conditions
from models.calls.states import CallStatus
from models.db.tables import FunctionCall, Tenant

EXPORT_BATCH = 5_000  # rows per query, at most
BATCH_BYTES = 16 * 1024 * 1024  # lines per query, at most (a row more, past it)
STREAM_ROWS = 20  # rows fetched from the database at a time
CHUNK_BYTES = 256 * 1024  # bytes handed to the response at a time


def _plain(column: Any, kind: TypeEngine[Any]) -> Any:
    """The column as its database type: statuses as strings and times naive UTC (orjson
    writes them as UTC), without the ORM types' per-value conversion."""
    return type_coerce(column, kind).label(column.key)


# The columns a line shows, in FunctionCallOut's order (`headers` is `response_headers`).
_COLUMNS: tuple[Any, ...] = (
    FunctionCall.id,
    _plain(FunctionCall.status, String()),
    FunctionCall.function,
    FunctionCall.app,
    FunctionCall.method,
    FunctionCall.url,
    FunctionCall.user_id,
    FunctionCall.connected_account_id,
    FunctionCall.batch_id,
    FunctionCall.network_code,
    FunctionCall.output,
    FunctionCall.output_truncated,
    FunctionCall.response_headers,
    FunctionCall.error,
    FunctionCall.error_message,
    FunctionCall.duration_ms,
    FunctionCall.attempt_count,
    _plain(FunctionCall.next_attempt_at, DateTime()),
    _plain(FunctionCall.created_at, DateTime()),
    _plain(FunctionCall.started_at, DateTime()),
    _plain(FunctionCall.finished_at, DateTime()),
)
_FINAL = frozenset(str(s) for s in CallStatus if s.is_final)
_DUMP_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def export_calls(engine: Engine, tenant: Tenant, filters: LogFilter) -> Iterator[bytes]:
    """Every matching call as one JSON line, newest first, in chunks of about CHUNK_BYTES."""
    chunk: list[bytes] = []
    size = 0
    for lines in _batches(engine, tenant.id, filters):
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield b"".join(chunk)
                chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


def _batches(engine: Engine, tenant_id: str, filters: LogFilter) -> Iterator[list[bytes]]:
    """The lines, a batch at a time: each batch is read (and its connection given back)
    before the client gets any of it."""
    where = log_conditions(tenant_id, filters)
    cursor: str | None = None
    while True:
        query = select(*_COLUMNS).where(*where)
        if cursor is not None:
            query = query.where(col(FunctionCall.id) < cursor)
        query = query.order_by(col(FunctionCall.id).desc()).limit(EXPORT_BATCH)
        lines, cursor, full = _read(engine, query)
        if lines:
            yield lines
        if not full:
            return


def _read(engine: Engine, query: Any) -> tuple[list[bytes], str | None, bool]:
    """One batch's lines, the last id read, and whether more may follow (the batch stopped
    at EXPORT_BATCH rows or BATCH_BYTES)."""
    lines: list[bytes] = []
    size, last = 0, None
    options = {"stream_results": True, "yield_per": STREAM_ROWS}
    with engine.connect().execution_options(**options) as connection:
        result = connection.execute(query)
        for row in result:
            line = _line(row)
            lines.append(line)
            size += len(line)
            last = row[0]
            if size >= BATCH_BYTES:
                result.close()
                return lines, last, True
    return lines, last, len(lines) == EXPORT_BATCH


def _line(row: Sequence[Any]) -> bytes:
    (id_, status, function, app, method, url, user_id, account, batch_id, code, output,
     truncated, headers, error, message, duration_ms, attempts, next_at, created_at,
     started_at, finished_at) = row  # fmt: skip
    return orjson.dumps(
        {
            "id": id_,
            "status": status,
            "function": function,
            "app": app,
            "method": method,
            "url": url,
            "user_id": user_id,
            "connected_account_id": account,
            "batch_id": batch_id,
            "network_code": code,
            "output": output,
            "output_truncated": truncated,
            "headers": headers,
            "error": error,
            "error_message": message,
            "duration_ms": duration_ms,
            "attempt_count": attempts,
            "next_attempt_at": None if status in _FINAL else next_at,
            "attempts": None,
            "created_at": created_at,
            "started_at": started_at,
            "finished_at": finished_at,
        },
        option=_DUMP_OPTIONS | orjson.OPT_APPEND_NEWLINE,
    )
