"""Retention: old finished calls go with their attempts, deliveries and Idempotency-Keys;
nothing else does. On Postgres a whole day goes at once, when its calls are all final."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, insert, select, text, update
from sqlmodel import Session, col

from models.accounts.tenants import create_tenant
from models.calls.states import CallStatus
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.ids import new_id
from models.db.partitions import day_name, ensure
from models.db.tables import (
    CallAttempt,
    CallIdempotency,
    ConnectedAccount,
    ConnectSession,
    FunctionCall,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
)
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.signing import message_id
from tests.worker.factories import make_account, make_call
from worker.retention import purge, purge_connect_links

# Real time: the database is shared, and other tests' calls are recent by this clock.
NOW = utcnow()


def _count(engine: Engine, table: type, **where: str) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return int(session.exec(query).one()[0])


def test_old_finished_calls_go_with_everything_that_hangs_off_them(
    engine: Engine, account: ConnectedAccount
) -> None:
    # Given, 31 days ago: 5 finished calls (one with an attempt and a delivered webhook) and a
    # call still waiting; and a finished call from yesterday
    old = NOW - timedelta(days=31)
    done = [
        make_call(
            engine,
            account,
            status=CallStatus.COMPLETED,
            created_at=old,
            callback_url="https://h.example/x",
        )
        for _ in range(5)
    ]
    waiting = make_call(engine, account, status=CallStatus.QUEUED, created_at=old)
    recent = make_call(
        engine, account, status=CallStatus.FAILED, created_at=NOW - timedelta(days=1)
    )
    with engine.begin() as conn:
        enqueue_deliveries(conn, [done[0].id], NOW)
    with Session(engine) as session:
        session.add(
            CallAttempt(
                call_id=done[0].id, number=1, started_at=old, duration_ms=1, decision="done"
            )
        )
        session.add(
            WebhookAttempt(
                delivery_id=message_id(done[0].id),
                number=1,
                started_at=NOW,
                duration_ms=1,
                status_code=204,
                decision="delivered",
            )
        )
        session.commit()
    # When the retention job runs with 30 days, in batches of 2
    deleted = purge(engine, NOW, 30, batch=2)
    # Then the 5 old finished calls are gone, with their attempt and delivery; the waiting
    # and the recent ones stay
    assert deleted >= 5
    for call in done:
        assert _count(engine, FunctionCall, id=call.id) == 0
    assert _count(engine, CallAttempt, call_id=done[0].id) == 0
    assert _count(engine, WebhookDelivery, call_id=done[0].id) == 0
    assert _count(engine, WebhookAttempt, delivery_id=message_id(done[0].id)) == 0
    assert _count(engine, FunctionCall, id=waiting.id) == 1
    assert _count(engine, FunctionCall, id=recent.id) == 1


def test_zero_days_keeps_everything(engine: Engine, account: ConnectedAccount) -> None:
    call = make_call(
        engine, account, status=CallStatus.COMPLETED, created_at=NOW - timedelta(days=400)
    )
    assert purge(engine, NOW, 0) == 0
    assert _count(engine, FunctionCall, id=call.id) == 1


def test_connect_links_go_an_hour_after_they_expired(engine: Engine, tenant: Tenant) -> None:
    # Given three links of a tenant: live, just expired, expired over an hour ago
    def link(expired_ago: timedelta) -> str:
        link_id = new_id("cs")
        row = ConnectSession(
            id=link_id,
            tenant_id=tenant.id,
            app="slack",
            user_id="u",
            redirect_url="https://tenant.test/back",
            token_hash=new_id("h"),
            expires_at=NOW - expired_ago,
            created_at=NOW - expired_ago - timedelta(minutes=10),
        )
        with session_scope(engine) as session:
            session.add(row)
        return link_id

    live, recent, old = (link(timedelta(minutes=m)) for m in (-5, 30, 61))
    # When retention runs / Then only the old one is gone
    assert purge_connect_links(engine, NOW) == 1
    with Session(engine) as session:
        assert {live, recent} <= set(session.execute(select(ConnectSession.id)).scalars())
        assert session.get(ConnectSession, old) is None


def _exists(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT to_regclass(:t)"), {"t": name}).scalar() is not None


def test_postgres_drops_a_whole_old_day_once_its_calls_are_final(
    own_engine: Engine, vault: Vault
) -> None:
    if own_engine.dialect.name != "postgresql":
        pytest.skip("day partitions are Postgres's; SQLite deletes row by row (above)")
    engine = own_engine
    tenant, _ = create_tenant(engine, "retention")
    account = make_account(engine, tenant, vault)
    # Given three old days with their partitions: the oldest all finished (with an attempt,
    # a delivered webhook and an Idempotency-Key), the next with a call still queued; and a
    # finished call from yesterday
    oldest, waiting_day = NOW - timedelta(days=40), NOW - timedelta(days=39)
    with engine.begin() as conn:
        ensure(conn, oldest.date(), (NOW - timedelta(days=38)).date())
    done = [
        make_call(
            engine,
            account,
            status=CallStatus.COMPLETED,
            created_at=oldest + timedelta(minutes=i),
            callback_url="https://h.example/x",
        )
        for i in range(3)
    ]
    waiting = make_call(engine, account, status=CallStatus.QUEUED, created_at=waiting_day)
    beside = make_call(engine, account, status=CallStatus.FAILED, created_at=waiting_day)
    recent = make_call(
        engine, account, status=CallStatus.COMPLETED, created_at=NOW - timedelta(days=1)
    )
    with engine.begin() as conn:
        enqueue_deliveries(conn, [done[0].id], NOW)
        conn.execute(
            insert(CallIdempotency.__table__),  # type: ignore[attr-defined]
            [
                {"tenant_id": tenant.id, "idempotency_key": c.id, "call_id": c.id}
                | {"created_at": c.created_at}
                for c in (done[0], recent)
            ],
        )
    with Session(engine) as session:
        session.add(
            CallAttempt(
                call_id=done[0].id, number=1, started_at=oldest, duration_ms=1, decision="d"
            )
        )
        session.commit()
    # When retention runs with 30 days
    purge(engine, NOW, 30)
    # Then the oldest day's partitions are gone, with the deliveries and keys of its calls
    assert not _exists(engine, day_name("function_call", oldest.date()))
    assert not _exists(engine, day_name("call_attempt", oldest.date()))
    assert _count(engine, FunctionCall, id=done[0].id) == 0
    assert _count(engine, WebhookDelivery, call_id=done[0].id) == 0
    assert _count(engine, CallIdempotency, call_id=done[0].id) == 0
    # And the day with a queued call waits, whole; nothing younger is touched
    assert _exists(engine, day_name("function_call", waiting_day.date()))
    for call in (waiting, beside, recent):
        assert _count(engine, FunctionCall, id=call.id) == 1
    assert _count(engine, CallIdempotency, call_id=recent.id) == 1
    # And once that call has ended, its day goes at the next run
    with engine.begin() as conn:
        conn.execute(
            update(FunctionCall).where(col(FunctionCall.id) == waiting.id).values(status="failed")
        )
    purge(engine, NOW, 30)
    assert not _exists(engine, day_name("function_call", waiting_day.date()))
    assert _count(engine, FunctionCall, id=recent.id) == 1
