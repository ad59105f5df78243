"""Migration 0013 on a populated database (Postgres: the calls and attempts partitioned by
day, the old tables attached whole; both: Idempotency-Keys in their own table), and the day
partitions afterwards: created ahead, and an insert of any id landing somewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, insert, inspect, select, text

from api.call_log import LogFilter, list_calls, load_attempts, load_call
from api.schemas.calls import PassthroughParams
from api.submission import Submission, submission_for, submit
from api.validation import CallLimits
from models.accounts.tenants import create_tenant
from models.broker import NoPublisher
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.db.ids import new_id
from models.db.migrate import pending, upgrade
from models.db.partitions import AHEAD_DAYS, day_name, ensure, keep_ahead, partitions
from models.db.tables import CallAttempt, CallIdempotency, FunctionCall, Tenant, WebhookDelivery
from models.errors import ApiError
from models.webhooks.outbox import enqueue_deliveries
from tests.models.conftest import migrate_to
from tests.worker.factories import make_account

pytestmark = pytest.mark.db

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]
_keys = CallIdempotency.__table__  # type: ignore[attr-defined]
LIMITS = CallLimits(max_timeout_s=90.0, max_call_body_bytes=10_000, allow_private_callbacks=False)
URL = "https://slack.com/api/conversations.list"


def _call(tenant: Tenant, account_id: str, at: datetime, **fields: object) -> dict[str, object]:
    return {
        "id": new_id("fc", now_ms=int(at.timestamp() * 1000)),
        "tenant_id": tenant.id,
        "app": "slack",
        "function": "slack-passthrough-request",
        "user_id": "user-1",
        "connected_account_id": account_id,
        "method": "GET",
        "url": URL,
        "status": "completed",
        "network_code": "200",
        "output_truncated": False,
        "attempt_count": 1,
        "created_at": at,
        "callback_url": None,
        "idempotency_key": None,
        **fields,
    }


def _other(catalog: Catalog, key: str) -> Submission:
    """A GET none of the migrated calls made, under `key`."""
    params = PassthroughParams(method="GET", url=URL + "?other=1")
    return submission_for(
        "slack",
        params,
        catalog,
        LIMITS,
        user_id="user-1",
        connected_account_id=None,
        callback_url=None,
        idempotency_key=key,
    )


def _indexes(engine: Engine) -> set[str]:
    """The names of function_call's indexes (its primary key's, if it has a name)."""
    found = inspect(engine)
    names = {str(i["name"]) for i in found.get_indexes("function_call")}
    names |= {str(u["name"]) for u in found.get_unique_constraints("function_call")}
    return names | {str(found.get_pk_constraint("function_call")["name"])}


def _where(engine: Engine, call_id: str) -> str:
    """The partition a call is stored in (the table itself on SQLite)."""
    if engine.dialect.name != "postgresql":
        return "function_call"
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT tableoid::regclass::text FROM function_call WHERE id = :id"),
                {"id": call_id},
            ).scalar_one()
        )


def test_a_populated_database_migrates_to_day_partitions(
    unmigrated: Engine, vault: Vault, catalog: Catalog
) -> None:
    # Given a database at 0012 with calls of the last three days, their attempts, a webhook
    # delivery, and calls submitted with an Idempotency-Key
    migrate_to(unmigrated, "0012")
    tenant, _ = create_tenant(unmigrated, "before-0013")
    account = make_account(unmigrated, tenant, vault)
    now = datetime.now(UTC)
    rows = [
        _call(tenant, account.id, now - timedelta(hours=5 * i), idempotency_key=f"key-{i}")
        for i in range(15)
    ]
    rows[0]["callback_url"] = "https://receiver.example/hook"
    with unmigrated.begin() as conn:
        conn.execute(insert(_calls), rows)
        attempts = [
            {"call_id": r["id"], "number": 1, "started_at": now, "duration_ms": 5, "decision": "ok"}
            for r in rows
        ]
        conn.execute(insert(_attempts), attempts)
        enqueue_deliveries(conn, [str(rows[0]["id"])], now)
    indexes = _indexes(unmigrated)
    # When migrated to the head
    upgrade(unmigrated)
    assert not pending(unmigrated)
    # Then the calls have every index they had, but the key's uniqueness (now apart)
    assert _indexes(unmigrated) == indexes - {"uq_call_idempotency"}
    # Then every call, attempt and delivery reads back as before
    page, _ = list_calls(unmigrated, tenant, LogFilter(), None, 50)
    assert [c.id for c in page] == [r["id"] for r in rows]
    for row in rows:
        assert load_call(unmigrated, tenant, str(row["id"])).network_code == "200"
        assert [a.number for a in load_attempts(unmigrated, str(row["id"]))] == [1]
    with unmigrated.connect() as conn:
        delivered = select(func.count()).select_from(WebhookDelivery.__table__)  # type: ignore[attr-defined]
        assert conn.execute(delivered).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(_keys)).scalar_one() == 15
    # And a key used before the migration still names its call: another request is a 409
    with pytest.raises(ApiError) as refused:
        submit(unmigrated, tenant, catalog, _other(catalog, "key-0"), publisher=NoPublisher())
    assert refused.value.status_code == 409
    # And a new call lands in today's partition (Postgres), the old ones stay where they were
    fresh = submit(unmigrated, tenant, catalog, _other(catalog, "key-new"), publisher=NoPublisher())
    if unmigrated.dialect.name == "postgresql":
        assert _where(unmigrated, str(rows[-1]["id"])) == "function_call_legacy"
        tomorrow = now + timedelta(days=1)
        later = _call(tenant, account.id, tomorrow)
        with unmigrated.begin() as conn:
            conn.execute(insert(_calls), [later])
        assert _where(unmigrated, str(later["id"])) == day_name("function_call", tomorrow.date())
    assert load_call(unmigrated, tenant, fresh.id).idempotency_key == "key-new"


@pytest.fixture
def partitioned_engine(own_engine: Engine) -> Engine:
    if own_engine.dialect.name != "postgresql":
        pytest.skip("partitions are Postgres's")
    return own_engine


def test_partitions_are_kept_ahead(partitioned_engine: Engine) -> None:
    # Given a migrated database, and a clock a year on
    engine = partitioned_engine
    later = datetime.now(UTC) + timedelta(days=365)
    # When the sweeper keeps the partitions ahead, twice, then the next day
    made = keep_ahead(engine, later)
    again = keep_ahead(engine, later)
    next_day = keep_ahead(engine, later + timedelta(days=1))
    # Then each day to AHEAD_DAYS ahead got its pair of partitions, once
    assert made == 2 * (AHEAD_DAYS + 1)
    assert (again, next_day) == (0, 2)
    with engine.connect() as conn:
        names = {p.name for p in partitions(conn, "call_attempt")}
    last = (later + timedelta(days=AHEAD_DAYS + 1)).date()
    assert day_name("call_attempt", last) in names


def test_an_insert_of_any_time_lands_and_moves_into_its_day(
    partitioned_engine: Engine, vault: Vault
) -> None:
    # Given calls made far in the past and far in the future (no partition has them)
    engine = partitioned_engine
    tenant, _ = create_tenant(engine, "any-time")
    account = make_account(engine, tenant, vault)
    past = datetime(1999, 1, 2, 3, tzinfo=UTC)
    future = datetime(2200, 5, 6, 7, tzinfo=UTC)
    rows = [_call(tenant, account.id, at) for at in (past, future)]
    # When they and an attempt each are written
    with engine.begin() as conn:
        conn.execute(insert(_calls), rows)
        conn.execute(
            insert(_attempts),
            [
                {"call_id": r["id"], "number": 1, "started_at": past, "duration_ms": 1}
                | {"decision": "ok"}
                for r in rows
            ],
        )
    # Then they are kept (in the default partition)
    assert {_where(engine, str(r["id"])) for r in rows} == {"function_call_default"}
    # And once the future day's partitions are made, its call and attempt move there
    with engine.begin() as conn:
        assert ensure(conn, future.date(), future.date()) == 2
    assert _where(engine, str(rows[1]["id"])) == day_name("function_call", future.date())
    assert [a.number for a in load_attempts(engine, str(rows[1]["id"]))] == [1]
    with engine.connect() as conn:
        in_day = text(f"SELECT count(*) FROM {day_name('call_attempt', future.date())}")
        assert conn.execute(in_day).scalar_one() == 1


def test_partitions_wait_for_no_long_query(partitioned_engine: Engine) -> None:
    # Given a long query reading the calls (an export), holding its lock
    engine = partitioned_engine
    later = datetime.now(UTC) + timedelta(days=700)
    with engine.connect() as reader, reader.begin():
        reader.execute(text("SELECT count(*) FROM function_call"))
        # When the sweeper would make new days meanwhile
        made = keep_ahead(engine, later)
    # Then it gives up after LOCK_TIMEOUT (the table stays writable) and makes them at the
    # next sweep
    assert made == 0
    assert keep_ahead(engine, later) == 2 * (AHEAD_DAYS + 1)
