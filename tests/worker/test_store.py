"""Storing the results of many calls at once, and only of the calls still ours."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from models.accounts.tenants import create_tenant
from models.calls.states import CallStatus
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.tables import (
    ConnectedAccount,
    FunctionCall,
    Tenant,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.worker.factories import NOW as STARTED
from tests.worker.factories import attempts_of, insert, load, make_account, make_call
from worker.calls.claim import Claimed, claim
from worker.calls.results import Attempted, Result
from worker.calls.store import LAST_USED_RESOLUTION, store_results

NOW = STARTED + timedelta(seconds=2)


def claimed_calls(engine: Engine, account: ConnectedAccount, n: int) -> list[Claimed]:
    """`n` queued calls, claimed as a worker does (running, attempt 1, with a lease)."""
    ids = [
        make_call(engine, account, method="POST", url=f"https://slack.com/api/x?n={i}").id
        for i in range(n)
    ]
    won = claim(engine, ids, now=STARTED, deadline_s=60)
    assert [c.call.id for c in won] == ids
    return won


def completed(c: Claimed, n: int = 0) -> Attempted:
    return Attempted(
        call_id=c.call.id,
        account_id=c.account.id if c.account else None,
        attempt=c.attempt,
        started_at=STARTED,
        result=Result(
            status=CallStatus.COMPLETED,
            decision="done: upstream answered 200",
            network_code="200",
            output={"n": n},
            headers={"content-type": "application/json"},
            duration_ms=12 + n,
        ),
    )


def take_back(engine: Engine, call_id: str, **values: object) -> None:
    """What the sweeper (or another worker's claim) does to a call whose lease expired."""
    with session_scope(engine) as session:
        session.exec(update(FunctionCall).where(col(FunctionCall.id) == call_id).values(**values))


def test_many_results_are_stored_at_once(engine: Engine, account: ConnectedAccount) -> None:
    # Given 20 claimed calls that all got an answer
    claimed = claimed_calls(engine, account, 20)
    items = [completed(c, i) for i, c in enumerate(claimed)]
    # When recorded together
    stored = store_results(engine, items, NOW)
    # Then every one is stored, with its own result
    ids = [c.call.id for c in claimed]
    assert stored == ids
    for i, call_id in enumerate(ids):
        call = load(engine, call_id)
        assert call.status is CallStatus.COMPLETED
        assert call.output == {"n": i}
        assert call.network_code == "200"
        assert call.duration_ms == 12 + i
        assert call.finished_at == NOW
        assert call.lease_expires_at is None
    # and each has one attempt row
    rows = attempts_of(engine, ids)
    assert sorted(r.call_id for r in rows) == sorted(ids)
    assert {(r.number, r.started_at, r.network_code) for r in rows} == {(1, STARTED, "200")}
    # and the account is marked used
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        assert row.last_used_at == NOW


def test_nothing_to_store(engine: Engine) -> None:
    assert store_results(engine, [], NOW) == []


@pytest.mark.parametrize(
    "taken_back",
    [
        # the sweeper moved it to retrying (idempotent call)
        {"status": CallStatus.RETRYING, "lease_expires_at": None, "next_attempt_at": NOW},
        # ... and another worker already claimed it again
        {"status": CallStatus.RUNNING, "attempt_count": 2},
        # the sweeper gave up on it (POST: outcome unknown)
        {"status": CallStatus.FAILED, "error": "outcome_unknown", "finished_at": NOW},
    ],
    ids=["retrying", "claimed-again", "given-up"],
)
def test_call_taken_back_is_left_alone_and_the_others_are_stored(
    engine: Engine, account: ConnectedAccount, taken_back: dict[str, object]
) -> None:
    # Given five claimed calls, one of which was taken back while its attempt ran
    claimed = claimed_calls(engine, account, 5)
    lost = claimed[2].call.id
    take_back(engine, lost, **taken_back)
    before = load(engine, lost)
    # When all five results are recorded together
    stored = store_results(engine, [completed(c, i) for i, c in enumerate(claimed)], NOW)
    # Then the four still ours are stored, each with its attempt
    ours = [c.call.id for c in claimed if c.call.id != lost]
    assert stored == ours
    for call_id in ours:
        call = load(engine, call_id)
        assert call.status is CallStatus.COMPLETED
        assert call.network_code == "200"
        assert call.finished_at == NOW
    assert sorted(r.call_id for r in attempts_of(engine, ours)) == sorted(ours)
    # and the taken-back call is untouched: no result, no attempt from this worker
    after = load(engine, lost)
    assert after.model_dump() == before.model_dump()
    assert attempts_of(engine, [lost]) == []


def test_every_call_taken_back_stores_nothing(engine: Engine, account: ConnectedAccount) -> None:
    claimed = claimed_calls(engine, account, 3)
    for c in claimed:
        take_back(engine, c.call.id, status=CallStatus.RETRYING, lease_expires_at=None)
    assert store_results(engine, [completed(c) for c in claimed], NOW) == []
    assert attempts_of(engine, [c.call.id for c in claimed]) == []
    assert {load(engine, c.call.id).status for c in claimed} == {CallStatus.RETRYING}


def test_result_that_is_not_final_leaves_finished_at_empty(
    engine: Engine, account: ConnectedAccount
) -> None:
    # Given a claimed call whose attempt ends in a retry
    [c] = claimed_calls(engine, account, 1)
    item = Attempted(
        call_id=c.call.id,
        account_id=account.id,
        attempt=c.attempt,
        started_at=STARTED,
        result=Result(status=CallStatus.RETRYING, decision="retry later", error="timeout"),
    )
    # When recorded / Then it is stored, not finished, with its attempt
    assert store_results(engine, [item], NOW) == [c.call.id]
    call = load(engine, c.call.id)
    assert call.status is CallStatus.RETRYING
    assert call.finished_at is None
    assert [a.decision for a in attempts_of(engine, [c.call.id])] == ["retry later"]


@pytest.mark.parametrize(
    ("last_used", "expected"),
    [
        (None, NOW),
        (NOW - LAST_USED_RESOLUTION - timedelta(seconds=1), NOW),
        (NOW - LAST_USED_RESOLUTION + timedelta(seconds=1), None),  # None: unchanged
    ],
    ids=["never", "long-ago", "just-now"],
)
def test_account_last_used_is_written_at_most_once_a_minute(
    engine: Engine,
    account: ConnectedAccount,
    last_used: datetime | None,
    expected: datetime | None,
) -> None:
    # Given an account last used at `last_used`
    with session_scope(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        row.last_used_at = last_used
    [c] = claimed_calls(engine, account, 1)
    # When one of its calls is recorded
    store_results(engine, [completed(c)], NOW)
    # Then last_used_at moves only if it is older than the resolution
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        assert row.last_used_at == (expected or last_used)


def test_a_single_result_announces_itself_to_its_own_tenants_endpoint(
    engine: Engine, account: ConnectedAccount, tenant: Tenant, vault: Vault
) -> None:
    # Given two tenants, each with an endpoint (the other's made first)
    other, _ = create_tenant(engine, f"other-{secrets.token_hex(3)}")
    for owner, url in ((other, "https://other.example/hook"), (tenant, "https://mine.example/h")):
        insert(engine, WebhookEndpoint(tenant_id=owner.id, url=url, secrets_enc="x"))
    other_account = make_account(engine, other, vault)
    mine, theirs = claimed_calls(engine, account, 1)[0], claimed_calls(engine, other_account, 1)[0]
    # When each call's result is stored alone (the interactive lane's store)
    deliveries: list[str] = []
    for c in (mine, theirs):
        assert store_results(engine, [completed(c)], NOW, deliveries=deliveries) == [c.call.id]
    # Then each event goes to its own tenant's endpoint
    with Session(engine) as session:
        urls = {
            d.call_id: d.url
            for d in session.exec(
                select(WebhookDelivery).where(col(WebhookDelivery.id).in_(deliveries))
            )
        }
    assert urls == {
        mine.call.id: "https://mine.example/h",
        theirs.call.id: "https://other.example/hook",
    }
