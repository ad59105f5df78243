"""A claim and a store find their calls by primary key, however many calls of the day went
through before them (Postgres: the plans the server chooses for the statements as sent)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, text

from models.db.direct import DriverConnection, Rendered
from models.db.tables import ConnectedAccount
from tests.conftest import on_direct_runs
from tests.worker.factories import NOW as STARTED
from tests.worker.factories import make_call
from tests.worker.test_store import completed
from worker.calls.claim import claim
from worker.calls.store import store_results

# Calls that went through (claimed, stored) before the one whose plans are read: each leaves
# entries for its earlier statuses in the indexes on status until the table is vacuumed.
FINISHED_BEFORE = 1_000


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The plan Postgres makes for each statement run on the driver's cursor, read with
    EXPLAIN on the same connection, with the same parameters, just before it runs."""
    found: list[dict[str, Any]] = []

    def explain(conn: DriverConnection, rendered: Rendered, params: dict[str, Any]) -> None:
        with conn._pooled.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute("EXPLAIN (FORMAT JSON) " + rendered.sql, params)
            [(plan,)] = cursor.fetchall()
        found.append((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])

    on_direct_runs(monkeypatch, explain)
    return found


def _indexes_on_calls(plan: dict[str, Any]) -> list[str]:
    """The indexes the plan reads on function_call (any of its day partitions)."""
    own = []
    if plan.get("Relation Name", "").startswith("function_call") and "Index Name" in plan:
        own.append(plan["Index Name"])
    return own + [name for child in plan.get("Plans", []) for name in _indexes_on_calls(child)]


def test_a_claim_and_a_store_read_the_primary_key_after_a_day_of_calls(
    engine: Engine, account: ConnectedAccount, plans: list[dict[str, Any]]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's plans are its own; the statements run there unchanged")
    # Given many calls of the day claimed and stored, and statistics that know it
    ids = [make_call(engine, account).id for _ in range(FINISHED_BEFORE)]
    for i in range(0, len(ids), 100):
        store_results(
            engine,
            [completed(c) for c in claim(engine, ids[i : i + 100], now=STARTED, deadline_s=60)],
            STARTED,
        )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE function_call"))
    plans.clear()
    # When one more call is claimed and its result stored, alone, as a waiting call's are
    [claimed] = claim(engine, [make_call(engine, account).id], now=STARTED, deadline_s=60)
    assert store_results(engine, [completed(claimed)], STARTED) == [claimed.call.id]
    # Then each statement finds its call by primary key: not by an index on its status,
    # which still holds an entry for every earlier call's `queued` and `running`
    assert len(plans) == 2
    for plan in plans:
        used = _indexes_on_calls(plan)
        assert used, plan
        assert all(name.endswith("_pkey") for name in used), used
