"""Every filter of the Function Calls log is served by an index, on a table with realistic
statistics: two tenants' calls (a few busy apps and users, many quiet ones), ANALYZEd on
Postgres (on Postgres, partitioned by day: each day's partition read by its own twin of
the index). No filter reads the whole table; each equality filter reads an index of its
column, newest first (migration 0009, docs/console.md "Speed"); where Postgres prefers to
sort, it sorts a few rows (a batch's calls, a rare combination), never the tenant's calls."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

from api.call_export import export_calls
from api.call_log import LogFilter, list_calls
from models.calls.states import CallStatus
from models.db.ids import new_id
from models.db.partitions import ensure, partitioned
from models.db.tables import FunctionCall, Tenant
from tests.conftest import two_tenants_rows
from tests.plans import plan_of

pytestmark = pytest.mark.db  # and so in the Postgres pass too

CALLS_PER_TENANT = 6_000
APPS = ["slack"] * 8 + ["hubspot"] * 4 + ["pipedrive"] * 3 + ["zendesk", "github", "jira"]
STATUSES = ["completed"] * 90 + ["failed"] * 5 + ["queued", "running", "retrying", "cancelled"]
CODES = ["200"] * 17 + ["404", "429", "500"]
# The calls' 17 hours end late in the day, so on Postgres they fill one day's partition: a
# partition of a few thousand rows read in good part (the export's later batches) is
# rightly read whole by the planner; a day in production holds millions.
END = datetime(2026, 12, 1, 23, tzinfo=UTC)
_calls = FunctionCall.__table__  # type: ignore[attr-defined]


def _rows(rng: random.Random, tenant_id: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(CALLS_PER_TENANT):
        at = END - timedelta(seconds=10 * (CALLS_PER_TENANT - i))
        status = rng.choice(STATUSES)
        user = min(int(rng.paretovariate(0.6)), 600)
        rows.append(
            {
                "id": new_id("fc", now_ms=int(at.timestamp() * 1000)),
                "tenant_id": tenant_id,
                "app": rng.choice(APPS),
                "function": "slack-passthrough-request",
                "user_id": f"user-{user}",
                "connected_account_id": f"ca_{user}",
                "batch_id": f"bt_{tenant_id}_{i // 200}" if i % 1000 < 200 else None,
                "method": "GET",
                "url": "https://slack.com/api/x",
                "status": status,
                "network_code": rng.choice(CODES) if status == "completed" else None,
                "output_truncated": False,
                "attempt_count": 1,
                "created_at": at,
            }
        )
    return rows


@pytest.fixture(scope="module")
def busy_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Tenant]]:
    """A tenant with thousands of calls, another tenant's beside them, statistics known (a
    database of this module's own: the plans depend on every row in it)."""
    rng = random.Random(3)

    def days(conn: Connection) -> None:
        if partitioned(conn):  # the days of the calls have their partitions
            ensure(conn, END.date(), END.date())

    folder = tmp_path_factory.mktemp("plans")
    with two_tenants_rows(folder, _calls, lambda t: _rows(rng, t), days) as (engine, tenant):
        yield engine, tenant


# A sort the plan may do: a batch's calls (at most 1,000) or fewer.
SMALL_SORT = 1_000
# Per filter, the names the index serving it may have (None: a combination, either of its
# two). A time range may be read by id (ix_call_tenant_id), or, where Postgres finds it
# cheaper, by creation time (ix_call_tenant_created) ANDed with the id bounds of the key.
FILTERS: dict[str, tuple[LogFilter, str | tuple[str, ...] | None]] = {
    "none": (LogFilter(), "ix_call_tenant_id"),
    "app": (LogFilter(app="jira"), "ix_call_log_app"),
    "status": (LogFilter(status=CallStatus.CANCELLED), "ix_call_log_status"),
    "user_id": (LogFilter(user_id="user-40"), "ix_call_log_user"),
    "batch_id": (LogFilter(batch_id="bt_{tenant}_2"), "batch"),
    "network_code": (LogFilter(network_code="500"), "ix_call_log_network_code"),
    "since_until": (
        LogFilter(since=END - timedelta(hours=5), until=END - timedelta(hours=4)),
        ("ix_call_tenant_id", "ix_call_tenant_created"),
    ),
    "until": (LogFilter(until=END - timedelta(hours=10)), "ix_call_tenant_id"),
    "app_status": (LogFilter(app="hubspot", status=CallStatus.FAILED), None),
    "user_status": (LogFilter(user_id="user-40", status=CallStatus.COMPLETED), None),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_reads_an_index_newest_first(
    busy_log: tuple[Engine, Tenant], name: str
) -> None:
    # Given thousands of calls of two tenants, and a filter of the log
    engine, tenant = busy_log
    filters, index = FILTERS[name]
    if filters.batch_id:
        filters = LogFilter(batch_id=filters.batch_id.format(tenant=tenant.id))
    # When the log's first page is planned, as list_calls asks for it
    plan = plan_of(engine, lambda: list_calls(engine, tenant, filters, None, 50), "function_call")
    # Then it does not read the whole table, nor sort more than a few of the calls found
    assert not plan.scans_table, plan.lines
    if plan.sorts:
        assert plan.sort_rows is not None, plan.lines  # SQLite: no sort at all
        assert plan.sort_rows <= SMALL_SORT, plan.lines
    # And a time range reads the ids of its time alone, not the tenant's newer calls first
    if filters.since or filters.until:
        assert plan.bounds_id(), plan.lines
    # And an equality filter reads an index of its column (a combination, one of its two)
    if index is not None:
        names = (index,) if isinstance(index, str) else index
        assert any(plan.uses(name) for name in names), plan.lines
    else:
        assert any(plan.uses(f"ix_call_log_{column}") for column in ("app", "status", "user"))


@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_exports_from_an_index(busy_log: tuple[Engine, Tenant], name: str) -> None:
    # Given thousands of calls of two tenants, and a filter of the log
    engine, tenant = busy_log
    filters, _ = FILTERS[name]
    if filters.batch_id:
        filters = LogFilter(batch_id=filters.batch_id.format(tenant=tenant.id))
    # When the export's batch query is planned (thousands of rows at a time)
    plan = plan_of(engine, lambda: list(export_calls(engine, tenant, filters)), "function_call")
    # Then it does not read the whole table either
    assert not plan.scans_table, plan.lines
