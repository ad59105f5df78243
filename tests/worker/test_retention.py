"""Retention: old finished calls go with their attempts and deliveries; nothing else does."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from models.calls.states import CallStatus
from models.db.engine import session_scope, utcnow
from models.db.ids import new_id
from models.db.tables import (
    CallAttempt,
    ConnectedAccount,
    ConnectSession,
    FunctionCall,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
)
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.signing import message_id
from tests.worker.factories import make_call
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
