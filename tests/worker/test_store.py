"""Storing the results of many calls at once, and only of the calls still ours."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, event, update
from sqlmodel import Session, col, select

from models.accounts.tenants import create_tenant
from models.calls.states import CallStatus
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.tables import (
    Batch,
    ConnectedAccount,
    FunctionCall,
    Tenant,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.keys import QUEUE_INTERACTIVE
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


def other_tenant_with_endpoints(engine: Engine, tenant: Tenant, vault: Vault) -> ConnectedAccount:
    """Another tenant, and an endpoint for it and for `tenant` (the other's made first);
    returns an account of the other tenant."""
    other, _ = create_tenant(engine, f"other-{secrets.token_hex(3)}")
    for owner, url in ((other, "https://other.example/hook"), (tenant, "https://mine.example/h")):
        insert(engine, WebhookEndpoint(tenant_id=owner.id, url=url, secrets_enc="x"))
    return make_account(engine, other, vault)


def test_a_single_result_announces_itself_to_its_own_tenants_endpoint(
    engine: Engine, account: ConnectedAccount, tenant: Tenant, vault: Vault
) -> None:
    # Given two tenants, each with an endpoint (the other's made first)
    other_account = other_tenant_with_endpoints(engine, tenant, vault)
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


def test_a_group_of_two_tenants_results_announces_each_to_its_own_endpoint(
    engine: Engine, account: ConnectedAccount, tenant: Tenant, vault: Vault
) -> None:
    # Given two tenants, each with an endpoint, and claimed calls of both
    mine = claimed_calls(engine, account, 2)
    theirs = claimed_calls(engine, other_tenant_with_endpoints(engine, tenant, vault), 1)
    retried = replace(
        completed(mine[1]), result=Result(status=CallStatus.RETRYING, decision="retry later")
    )
    # When their results are stored as one group (a bulk message's), one of them a retry
    deliveries: list[str] = []
    items = [completed(mine[0]), retried, completed(theirs[0])]
    stored = store_results(engine, items, NOW, deliveries=deliveries)
    # Then all are stored with their attempts, and each finished call's event goes to its
    # own tenant's endpoint; the retry has none
    assert stored == [i.call_id for i in items]
    assert len(attempts_of(engine, stored)) == 3
    urls = {d.call_id: d.url for d in deliveries_of(engine, deliveries)}
    assert urls == {
        mine[0].call.id: "https://mine.example/h",
        theirs[0].call.id: "https://other.example/hook",
    }
    assert load(engine, mine[1].call.id).status is CallStatus.RETRYING


def deliveries_of(engine: Engine, ids: list[str]) -> list[WebhookDelivery]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookDelivery).where(col(WebhookDelivery.id).in_(ids))))


def test_a_single_result_is_stored_with_its_attempt_and_its_callback_event(
    engine: Engine, account: ConnectedAccount, tenant: Tenant
) -> None:
    # Given a claimed call with its own callback URL, its tenant having an endpoint too
    insert(
        engine, WebhookEndpoint(tenant_id=tenant.id, url="https://mine.example/h", secrets_enc="x")
    )
    call = make_call(engine, account, callback_url="https://cb.example/one")
    [c] = claim(engine, [call.id], now=STARTED, deadline_s=60)
    item = replace(
        completed(c, 3),
        result=replace(completed(c, 3).result, rate_wait_ms=7, rate_wait_reason="r" * 300),
    )
    # When its result is stored alone (on Postgres: one statement)
    deliveries: list[str] = []
    assert store_results(engine, [item], NOW, deliveries=deliveries) == [call.id]
    # Then the call, its attempt and one event to its callback URL are written together
    stored = load(engine, call.id)
    assert (stored.status, stored.output, stored.finished_at) == (
        CallStatus.COMPLETED,
        {"n": 3},
        NOW,
    )
    [attempt] = attempts_of(engine, [call.id])
    assert (attempt.number, attempt.started_at, attempt.duration_ms) == (1, STARTED, 15)
    assert (attempt.network_code, attempt.decision) == ("200", "done: upstream answered 200")
    assert (attempt.rate_wait_ms, attempt.rate_wait_reason) == (7, "r" * 200)
    [event] = deliveries_of(engine, deliveries)
    assert (event.call_id, event.tenant_id, event.url) == (
        call.id,
        tenant.id,
        "https://cb.example/one",
    )
    assert (event.event, event.to_endpoint, event.created_at) == (
        "function_call.completed",
        False,
        NOW,
    )


def test_a_single_retry_writes_no_event(
    engine: Engine, account: ConnectedAccount, tenant: Tenant
) -> None:
    insert(
        engine, WebhookEndpoint(tenant_id=tenant.id, url="https://mine.example/h", secrets_enc="x")
    )
    [c] = claimed_calls(engine, account, 1)
    item = replace(
        completed(c), result=Result(status=CallStatus.RETRYING, decision="retry", error="timeout")
    )
    deliveries: list[str] = []
    assert store_results(engine, [item], NOW, deliveries=deliveries) == [c.call.id]
    assert deliveries == []
    assert len(attempts_of(engine, [c.call.id])) == 1


def test_a_single_result_without_a_target_writes_no_event(
    engine: Engine, account: ConnectedAccount
) -> None:
    [c] = claimed_calls(engine, account, 1)
    deliveries: list[str] = []
    assert store_results(engine, [completed(c)], NOW, deliveries=deliveries) == [c.call.id]
    assert deliveries == []


def test_a_single_result_taken_back_stores_nothing(
    engine: Engine, account: ConnectedAccount
) -> None:
    [c] = claimed_calls(engine, account, 1)
    take_back(engine, c.call.id, status=CallStatus.RUNNING, attempt_count=2)
    before = load(engine, c.call.id)
    assert store_results(engine, [completed(c)], NOW) == []
    assert load(engine, c.call.id).model_dump() == before.model_dump()
    assert attempts_of(engine, [c.call.id]) == []


def test_a_batchs_last_call_stored_alone_writes_the_batchs_event_too(
    engine: Engine, account: ConnectedAccount, tenant: Tenant
) -> None:
    # Given a batch of one call, its tenant with an endpoint, the result marked for the
    # interactive lane (the one-statement path must still not take a batch's call)
    insert(
        engine, WebhookEndpoint(tenant_id=tenant.id, url="https://mine.example/h", secrets_enc="x")
    )
    batch = insert(
        engine, Batch(id=f"b_{secrets.token_hex(6)}", tenant_id=tenant.id, accepted=1, rejected=0)
    )
    call = make_call(engine, account, batch_id=batch.id)
    [c] = claim(engine, [call.id], now=STARTED, deadline_s=60)
    item = replace(completed(c), lane=QUEUE_INTERACTIVE)
    # When stored / Then the call's event and the batch's are both written
    deliveries: list[str] = []
    assert store_results(engine, [item], NOW, deliveries=deliveries) == [call.id]
    events = sorted(d.event for d in deliveries_of(engine, deliveries))
    assert events == ["batch.completed", "function_call.completed"]


def test_an_accounts_use_is_written_once_a_minute_by_one_process(
    engine: Engine, account: ConnectedAccount
) -> None:
    # Given a process that stored one of the account's calls a moment ago
    touched: dict[str, datetime] = {}
    first, second = claimed_calls(engine, account, 2)
    store_results(engine, [completed(first)], NOW, touched)
    assert touched == {account.id: NOW}
    with session_scope(engine) as session:  # someone clears it meanwhile
        session.exec(
            update(ConnectedAccount)
            .where(col(ConnectedAccount.id) == account.id)
            .values(last_used_at=None)
        )
    # When the next is stored within the minute / Then the process does not write it again
    store_results(engine, [completed(second)], NOW + timedelta(seconds=1), touched)
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        assert row.last_used_at is None


def test_a_process_remembers_a_bounded_number_of_accounts_it_wrote(
    engine: Engine, account: ConnectedAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process that remembers at most 3 accounts, and has written 3 others' use
    monkeypatch.setattr("worker.calls.store_one.MAX_TOUCHED", 3)
    touched = {f"ca_other_{i}": NOW for i in range(3)}
    # When one more account's result is stored
    [c] = claimed_calls(engine, account, 1)
    store_results(engine, [completed(c)], NOW, touched)
    # Then the others are forgotten (their next results write their use again), not kept
    # beside it: a tenant with a million accounts costs every worker nothing
    assert touched == {account.id: NOW}
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        assert row.last_used_at is not None


def test_on_postgres_a_single_interactive_result_is_one_statement(
    engine: Engine, account: ConnectedAccount, tenant: Tenant, direct_runs: list[tuple[str, int]]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores in one transaction, in process")
    insert(
        engine, WebhookEndpoint(tenant_id=tenant.id, url="https://mine.example/h", secrets_enc="x")
    )
    [c] = claimed_calls(engine, account, 1)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    direct_runs.clear()
    event.listen(engine, "before_cursor_execute", count)
    try:
        deliveries: list[str] = []
        assert store_results(engine, [completed(c)], NOW, {}, deliveries) == [c.call.id]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # The call, its attempt, its event and the account's use: one round trip, no transaction
    assert statements == []
    assert [sql.split()[0] for sql, _ in direct_runs] == ["WITH"]
    assert len(deliveries_of(engine, deliveries)) == 1
    assert len(attempts_of(engine, [c.call.id])) == 1


def test_on_postgres_a_group_is_claimed_and_stored_by_two_statements_of_few_parameters(
    engine: Engine, account: ConnectedAccount, direct_runs: list[tuple[str, int]]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores a group with an executemany")
    ids = [make_call(engine, account, url=f"https://slack.com/api/x?n={i}").id for i in range(60)]
    statements: list[tuple[str, int]] = []

    def count(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        if "call_attempt" in statement or "function_call" in statement:
            statements.append((statement, len(parameters)))  # type: ignore[arg-type]

    event.listen(engine, "before_cursor_execute", count)
    try:
        claimed = claim(engine, ids, now=STARTED, deadline_s=60)
        stored = store_results(engine, [completed(c, i) for i, c in enumerate(claimed)], NOW)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # Then the claim is one statement (on the driver's cursor), and the calls with their
    # attempts another
    statements += direct_runs
    assert len(stored) == 60
    assert len(statements) == 2
    assert len(attempts_of(engine, stored)) == 60
    # And each has fewer parameters than there are calls: the ids go as one array, so the
    # driver converts each statement once, whatever the number of calls
    assert all(n < 30 for _, n in statements), [n for _, n in statements]
