"""The log's migrations on a populated database: 0011 (the indexes on batch_id and
network_code hold only the calls with a value, and the log's filters still find them) and
0012 (outputs and response headers stored packed, the JSON written before read the same)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, func, insert, select, text, update

from api.call_log import LogFilter, list_calls, load_call
from models.accounts.tenants import create_tenant
from models.db.ids import new_id
from models.db.migrate import pending, upgrade
from models.db.packed import PACK_ABOVE
from models.db.tables import FunctionCall
from tests.models.conftest import migrate_to

pytestmark = pytest.mark.db

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
PARTIAL = ("ix_call_log_batch", "ix_function_call_batch_id", "ix_call_log_network_code")


def _index_sql(engine: Engine, name: str) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            query = "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
        else:
            query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"
        return str(conn.execute(text(query), {"n": name}).scalar_one())


def _rows(tenant_id: str) -> list[dict[str, object]]:
    start = datetime(2026, 11, 30, tzinfo=UTC)
    rows = []
    for i in range(30):
        at = start + timedelta(seconds=i)
        rows.append(
            {
                "id": new_id("fc", now_ms=int(at.timestamp() * 1000)),
                "tenant_id": tenant_id,
                "app": "slack",
                "function": "slack-passthrough-request",
                "user_id": "u",
                "connected_account_id": "ca_1",
                "batch_id": "bt_1" if i % 3 == 0 else None,
                "method": "GET",
                "url": "https://slack.com/api/x",
                "status": "completed" if i % 2 else "queued",
                "network_code": "200" if i % 2 else None,
                "output_truncated": False,
                "attempt_count": 1,
                "created_at": at,
            }
        )
    return rows


def test_a_populated_database_migrates_to_partial_indexes(unmigrated: Engine) -> None:
    # Given a database at 0010 with calls, some in a batch, some with a code
    migrate_to(unmigrated, "0010")
    tenant, _ = create_tenant(unmigrated, "before-0011")
    with unmigrated.begin() as conn:
        conn.execute(insert(_calls), _rows(tenant.id))
    assert "WHERE" not in _index_sql(unmigrated, "ix_call_log_batch").upper()
    # When migrated to the head
    upgrade(unmigrated)
    # Then every call is there, and each of the three indexes is partial
    assert not pending(unmigrated)
    with unmigrated.connect() as conn:
        assert conn.execute(select(func.count()).select_from(_calls)).scalar() == 30
    for name in PARTIAL:
        assert "IS NOT NULL" in _index_sql(unmigrated, name).upper(), name
    # And the filters find the calls they found before
    batch, _ = list_calls(unmigrated, tenant, LogFilter(batch_id="bt_1"), None, 50)
    coded, _ = list_calls(unmigrated, tenant, LogFilter(network_code="200"), None, 50)
    assert (len(batch), len(coded)) == (10, 15)


# Outputs of every JSON kind, as the JSON columns held them before 0012.
OUTPUTS: list[object] = [{"a": [1, 2.5, None, "é"]}, [1, "x"], "text", True, None]
HEADERS = {"content-type": "application/json", "x-request-id": "r" * 40}
# function_call as it was before 0012: its output and headers JSON.
_BEFORE_0012 = sa.table(
    "function_call",
    *(
        sa.column(c.name, sa.JSON() if c.name in ("output", "response_headers") else c.type)
        for c in _calls.columns
    ),
)


def test_a_populated_database_keeps_its_outputs_packed(unmigrated: Engine) -> None:
    # Given a database at 0011 whose calls hold outputs and headers as JSON
    migrate_to(unmigrated, "0011")
    tenant, _ = create_tenant(unmigrated, "before-0012")
    rows = _rows(tenant.id)[: len(OUTPUTS)]
    for row, output in zip(rows, OUTPUTS, strict=True):
        row.update(output=output, response_headers=HEADERS)
    with unmigrated.begin() as conn:
        conn.execute(insert(_BEFORE_0012), rows)
    # When migrated to the head
    upgrade(unmigrated)
    # Then each call reads back the output and headers it had
    for row, output in zip(rows, OUTPUTS, strict=True):
        call = load_call(unmigrated, tenant, str(row["id"]))
        assert (call.output, call.response_headers) == (output, HEADERS)
    # And an output written since is stored compressed, and reads back whole
    big = {"items": [{"id": i, "name": "item"} for i in range(PACK_ABOVE)]}
    with unmigrated.begin() as conn:
        conn.execute(update(_calls).where(_calls.c.id == rows[0]["id"]).values(output=big))
        stored = conn.execute(
            text("SELECT output FROM function_call WHERE id = :id"), {"id": rows[0]["id"]}
        ).scalar_one()
    assert bytes(stored)[:1] == b"x"
    assert len(bytes(stored)) < len(str(big)) / 4
    assert load_call(unmigrated, tenant, str(rows[0]["id"])).output == big
