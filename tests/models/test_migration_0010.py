"""Migration 0010 on a populated database: the calls stay, the indexes on batch_id and
network_code hold only the calls with a value, and the log's filters still find them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, func, insert, select, text

from api.call_log import LogFilter, list_calls
from models.accounts.tenants import create_tenant
from models.db.engine import create_db_engine
from models.db.ids import new_id
from models.db.migrate import alembic_config, pending, upgrade
from models.db.tables import FunctionCall
from tests.conftest import new_database

pytestmark = pytest.mark.db

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
PARTIAL = ("ix_call_log_batch", "ix_function_call_batch_id", "ix_call_log_network_code")


def _migrate_to(engine: Engine, revision: str) -> None:
    cfg = alembic_config(str(engine.url))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


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


def test_a_populated_database_migrates_to_partial_indexes(tmp_path: Path) -> None:
    with new_database(tmp_path) as url:
        engine = create_db_engine(url, pool_size=1)
        try:
            # Given a database at 0009 with calls, some in a batch, some with a code
            _migrate_to(engine, "0009")
            tenant, _ = create_tenant(engine, "before-0010")
            with engine.begin() as conn:
                conn.execute(insert(_calls), _rows(tenant.id))
            assert "WHERE" not in _index_sql(engine, "ix_call_log_batch").upper()
            # When migrated to the head
            upgrade(engine)
            # Then every call is there, and each of the three indexes is partial
            assert not pending(engine)
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(_calls)).scalar() == 30
            for name in PARTIAL:
                assert "IS NOT NULL" in _index_sql(engine, name).upper(), name
            # And the filters find the calls they found before
            batch, _ = list_calls(engine, tenant, LogFilter(batch_id="bt_1"), None, 50)
            coded, _ = list_calls(engine, tenant, LogFilter(network_code="200"), None, 50)
            assert (len(batch), len(coded)) == (10, 15)
        finally:
            engine.dispose()
