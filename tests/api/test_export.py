"""The log's NDJSON export: each line is the call exactly as the API shows it (`call_out`),
whatever the call holds, read in batches and handed out in chunks; its query reads an index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import Engine, insert

from api.call_export import export_calls
from api.call_log import LogFilter, list_calls
from models.calls.resources import call_out
from models.calls.states import CallStatus
from models.db.ids import new_id
from models.db.tables import FunctionCall, Tenant

pytestmark = pytest.mark.db

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
START = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)


def _varied_calls(engine: Engine, tenant: Tenant, count: int) -> list[str]:
    """Calls of every shape: final and waiting, outputs of every JSON kind, with and
    without headers, times with and without microseconds."""
    statuses = list(CallStatus)
    outputs = [None, {"a": [1, 2.5, None, "é"]}, [1, "x"], "text", 3, True, {"n": {"m": {}}}]
    rows = []
    for i in range(count):
        at = START + timedelta(seconds=i, microseconds=0 if i % 3 else 123_456 * (i % 7))
        status = statuses[i % len(statuses)]
        rows.append(
            {
                "id": new_id("fc", now_ms=int(at.timestamp() * 1000)),
                "tenant_id": tenant.id,
                "app": "slack" if i % 2 else "hubspot",
                "function": "slack-passthrough-request",
                "user_id": f"user-{i % 4}",
                "connected_account_id": "ca_1",
                "batch_id": "bt_1" if i % 5 == 0 else None,
                "method": "POST",
                "url": f'https://slack.com/api/x?i={i}&q=\u00e9"',
                "status": status,
                "error": "timeout" if status == CallStatus.FAILED else None,
                "error_message": "line\nbreak" if i % 4 == 0 else None,
                "network_code": "200" if status == CallStatus.COMPLETED else None,
                "output": outputs[i % len(outputs)],
                "output_truncated": i % 6 == 0,
                "response_headers": {"content-type": "application/json"} if i % 2 else None,
                "duration_ms": i if status.is_final else None,
                "attempt_count": i % 3,
                "next_attempt_at": at + timedelta(seconds=30),
                "created_at": at,
                "started_at": at + timedelta(milliseconds=5) if i % 2 else None,
                "finished_at": at + timedelta(seconds=1) if status.is_final else None,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(_calls), rows)
    return [r["id"] for r in rows]


def _expected(engine: Engine, tenant: Tenant, filters: LogFilter) -> list[bytes]:
    calls, _ = list_calls(engine, tenant, filters, None, 10_000)
    return [orjson.dumps(call_out(c).model_dump(mode="json")) + b"\n" for c in calls]


def test_each_line_is_the_call_as_the_api_shows_it(engine: Engine, tenant: Tenant) -> None:
    # Given calls of every shape
    _varied_calls(engine, tenant, 60)
    # When exported
    lines = b"".join(export_calls(engine, tenant, LogFilter())).splitlines(keepends=True)
    # Then each line is byte for byte the call's resource as the log answers it, newest first
    assert lines == _expected(engine, tenant, LogFilter())
    assert len(lines) == 60


@pytest.mark.parametrize(
    ("rows", "batch_bytes"),
    [(7, 16 * 1024 * 1024), (5_000, 1_500)],  # batches cut by rows, or by bytes (large outputs)
)
def test_batches_and_chunks_lose_and_repeat_nothing(
    engine: Engine,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    rows: int,
    batch_bytes: int,
) -> None:
    # Given 50 calls, batches of a few rows or a few lines' bytes, and chunks of about 1 KB
    monkeypatch.setattr("api.call_export.EXPORT_BATCH", rows)
    monkeypatch.setattr("api.call_export.BATCH_BYTES", batch_bytes)
    monkeypatch.setattr("api.call_export.CHUNK_BYTES", 1_000)
    _varied_calls(engine, tenant, 50)
    filters = LogFilter(app="slack")
    # When exported under a filter
    chunks = list(export_calls(engine, tenant, filters))
    # Then it came in several chunks, each of whole lines
    assert len(chunks) > 3
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    # And together they are the filtered log, every call once, newest first
    assert b"".join(chunks).splitlines(keepends=True) == _expected(engine, tenant, filters)


def test_an_empty_export_is_empty(engine: Engine, tenant: Tenant) -> None:
    assert list(export_calls(engine, tenant, LogFilter(user_id="nobody"))) == []
