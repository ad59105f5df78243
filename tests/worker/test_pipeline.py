"""Calls through the pipeline: claim, credentials, send, classify, record, notify; one id or
many per message."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from models.accounts.tenants import create_tenant
from models.calls.notices import parse_result_notice, result_notice
from models.calls.resources import CallResult, call_result
from models.calls.states import CallStatus
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault, generate_encryption_key
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import ConnectedAccount, FunctionCall, Tenant
from models.logs import CALLS_LOGGER, JsonFormatter
from models.terminal import TerminalFormatter
from tests.worker.factories import (
    NOW,
    SECRET,
    RecordingPublisher,
    attempts,
    attempts_of,
    load,
    make_account,
    make_call,
    make_runtime,
)
from worker.calls.pipeline import execute_calls
from worker.calls.results import tally
from worker.calls.retry import RetryPolicy
from worker.runtime import Runtime

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class CountingVault(Vault):
    """A Vault that counts decryptions."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        self.decrypted: list[str] = []

    def decrypt(self, token: str, *, bound_to: str) -> dict[str, Any]:
        self.decrypted.append(token)
        return super().decrypt(token, bound_to=bound_to)


@dataclass
class Harness:
    """A Runtime whose upstream, notifications and decryptions are recorded."""

    runtime: Runtime
    requests: list[httpx.Request]
    notified: list[str]
    bursts: list[list[str]]
    vault: CountingVault
    handler: list[Handler] = field(default_factory=list)
    answered: list[CallResult] = field(default_factory=list)  # results sent to waiters

    def answer(self, handler: Handler) -> None:
        self.handler[:] = [handler]

    def run(self, call_ids: Sequence[str]) -> dict[str, CallStatus]:
        return execute_calls(call_ids, self.runtime)


@pytest.fixture
def harness(engine: Engine, catalog: Catalog, encryption_key: str) -> Iterator[Harness]:
    requests: list[httpx.Request] = []
    notified: list[str] = []
    bursts: list[list[str]] = []
    answered: list[CallResult] = []
    handlers: list[Handler] = [lambda _: httpx.Response(200, json={"ok": True})]
    vault = CountingVault([encryption_key])

    async def transport(request: httpx.Request) -> httpx.Response:
        requests.append(request)  # runs on the sender's loop thread; MockTransport read it
        response = handlers[0](request)
        return response if isinstance(response, httpx.Response) else await response

    def notify(call_ids: Sequence[str], results: Sequence[CallResult]) -> None:
        answered.extend(results)
        bursts.append(list(call_ids))
        notified.extend(call_ids)

    runtime = make_runtime(
        engine,
        catalog,
        vault,
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(transport)),
        max_response_bytes=10_000,
        notify=notify,
    )
    yield Harness(runtime, requests, notified, bursts, vault, handlers, answered)
    runtime.sender.close()


def test_execute_completes_the_call(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a queued call and an upstream answering JSON
    call = make_call(engine, account)
    harness.answer(
        lambda _: httpx.Response(
            200,
            json={"ok": True, "channels": ["general"]},
            headers={"X-Request-Id": "up-1", "Set-Cookie": "s=1"},
        )
    )
    # When the worker executes it
    statuses = harness.run([call.id])
    # Then it is completed with the upstream result stored
    assert statuses == {call.id: CallStatus.COMPLETED}
    stored = load(engine, call.id)
    assert stored.status is CallStatus.COMPLETED
    assert stored.network_code == "200"
    assert stored.output == {"ok": True, "channels": ["general"]}
    assert stored.response_headers is not None
    assert stored.response_headers["x-request-id"] == "up-1"
    assert stored.response_headers["content-type"] == "application/json"
    assert "set-cookie" not in stored.response_headers
    assert stored.error is None
    assert stored.attempt_count == 1
    assert stored.started_at == NOW
    assert stored.finished_at == NOW
    assert stored.lease_expires_at is None
    # and one attempt is recorded, and waiters are notified
    rows = attempts(engine, call.id)
    assert len(rows) == 1
    assert rows[0].number == 1
    assert rows[0].network_code == "200"
    assert rows[0].error is None
    assert harness.notified == [call.id]
    # with the result the API answers a waiting caller with, as it would read it
    notices = [result_notice(r) for r in harness.answered]
    assert [parse_result_notice(n) for n in notices if n] == [
        (call.id, call_result(stored).model_dump_json().encode())
    ]
    # and the upstream got the request as asked
    assert len(harness.requests) == 1
    assert str(harness.requests[0].url) == "https://slack.com/api/conversations.list?limit=2"
    assert harness.requests[0].method == "GET"


def test_account_last_used_is_set(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    call = make_call(engine, account)
    harness.run([call.id])
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        assert row.last_used_at == NOW


def test_second_execution_does_nothing(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a call that was already executed once
    call = make_call(engine, account)
    assert harness.run([call.id]) == {call.id: CallStatus.COMPLETED}
    # When the same id is delivered again
    again = harness.run([call.id])
    # Then nothing happens
    assert again == {}
    assert len(harness.requests) == 1
    assert harness.notified == [call.id]
    assert len(attempts(engine, call.id)) == 1
    assert load(engine, call.id).attempt_count == 1


def test_unknown_id_does_nothing(harness: Harness) -> None:
    assert harness.run([new_id("fc")]) == {}
    assert harness.requests == []
    assert harness.notified == []


def test_upstream_404_is_completed(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    call = make_call(engine, account)
    harness.answer(lambda _: httpx.Response(404, json={"ok": False, "error": "not_found"}))
    assert harness.run([call.id]) == {call.id: CallStatus.COMPLETED}
    stored = load(engine, call.id)
    assert stored.status is CallStatus.COMPLETED
    assert stored.network_code == "404"
    assert stored.output == {"ok": False, "error": "not_found"}
    assert stored.error is None


def test_connect_error_on_the_last_attempt_is_failed(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a call that already used all but one of its attempts
    call = make_call(engine, account, attempt_count=RetryPolicy().max_attempts - 1)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    harness.answer(refuse)
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    stored = load(engine, call.id)
    assert stored.status is CallStatus.FAILED
    assert stored.error == "connect_error"
    assert stored.error_message
    assert stored.network_code is None
    assert stored.finished_at == NOW
    rows = attempts(engine, call.id)
    assert [r.error for r in rows] == ["connect_error"]
    assert harness.notified == [call.id]


def test_connect_error_with_attempts_left_is_retried_later(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a POST whose upstream refuses the connection (so it surely was not sent)
    call = make_call(engine, account, method="POST")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    harness.answer(refuse)
    # When it runs
    assert harness.run([call.id]) == {call.id: CallStatus.RETRYING}
    # Then it waits for a next attempt, with the reason recorded, and nobody is told it ended
    stored = load(engine, call.id)
    assert stored.status is CallStatus.RETRYING
    assert stored.finished_at is None
    assert stored.next_attempt_at is not None
    assert stored.next_attempt_at > NOW
    [row] = attempts(engine, call.id)
    assert row.error == "connect_error"
    assert row.decision.startswith("retry in ")
    assert harness.notified == []


@pytest.mark.parametrize("status", [CallStatus.CANCELLED, CallStatus.COMPLETED, CallStatus.FAILED])
def test_finished_call_is_not_executed(
    engine: Engine, account: ConnectedAccount, harness: Harness, status: CallStatus
) -> None:
    # Given a call that was cancelled (or already ended)
    call = make_call(engine, account, status=status)
    # When a message for it arrives
    result = harness.run([call.id])
    # Then nothing is sent or recorded
    assert result == {}
    assert harness.requests == []
    assert harness.notified == []
    assert load(engine, call.id).status is status
    assert attempts(engine, call.id) == []


def test_authorization_reaches_upstream_but_is_never_stored(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a call with caller headers and a JSON body
    call = make_call(
        engine,
        account,
        method="POST",
        url="https://slack.com/api/chat.postMessage",
        headers={"X-Trace": "t-1"},
        body={"channel": "C1", "text": "hi"},
    )
    harness.answer(lambda _: httpx.Response(200, json={"ok": True}))
    # When executed
    assert harness.run([call.id]) == {call.id: CallStatus.COMPLETED}
    # Then the upstream saw the credential, the caller header and the JSON body
    sent = harness.requests[0]
    assert sent.headers["Authorization"] == f"Bearer {SECRET}"
    assert sent.headers["X-Trace"] == "t-1"
    assert json.loads(sent.content) == {"channel": "C1", "text": "hi"}
    # and the secret is nowhere in what is stored about the call
    stored = load(engine, call.id)
    assert stored.request_headers == {"X-Trace": "t-1"}
    stored_text = json.dumps(
        [
            stored.request_headers,
            stored.request_body,
            stored.output,
            stored.response_headers,
            stored.error_message,
            stored.url,
        ]
    )
    assert SECRET not in stored_text
    assert "authorization" not in stored_text.lower()
    [attempt] = attempts(engine, call.id)
    assert SECRET not in f"{attempt.error_message} {attempt.decision}"


def test_api_key_app_uses_its_header(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness, catalog: Catalog
) -> None:
    header_apps = [a for a in catalog if a.auth.type == "header" and not a.template_fields]
    assert header_apps, "no header-auth app in the catalog"
    app = header_apps[0]
    assert app.auth.name is not None
    account = make_account(engine, tenant, vault, app=app.slug, credentials={"api_key": "k-77"})
    base, _ = app.resolve(None)
    call = make_call(engine, account, app=app.slug, url=f"{base}/ping")
    assert harness.run([call.id]) == {call.id: CallStatus.COMPLETED}
    assert harness.requests[0].headers[app.auth.name] == f"{app.auth.prefix}k-77"


def test_undecryptable_credentials_fail_the_call(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given an account encrypted under a key the worker does not have
    foreign = Vault([generate_encryption_key()]).encrypt({"access_token": SECRET}, bound_to="ca_x")
    account = make_account(engine, tenant, vault, encrypted=foreign)
    call = make_call(engine, account)
    # When executed / Then it fails without reaching the upstream
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    stored = load(engine, call.id)
    assert stored.error == "credentials_invalid"
    assert harness.requests == []
    assert harness.notified == [call.id]


def test_credentials_copied_from_another_tenants_account_are_refused(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given tenant A's account, and tenant B's account whose row was given A's ciphertext
    # (swapped in the database)
    other_tenant, _ = create_tenant(engine, "tenant-a")
    a = make_account(engine, other_tenant, vault, credentials={"access_token": "xoxb-of-a"})
    b = make_account(engine, tenant, vault, encrypted=a.credentials_enc)
    call = make_call(engine, b)
    # When B's call runs
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    # Then it fails, saying why, without reaching the upstream with A's token
    stored = load(engine, call.id)
    assert stored.error == "credentials_invalid"
    assert stored.error_message is not None
    assert "another row" in stored.error_message
    assert a.id not in stored.error_message
    assert harness.requests == []


def test_deleted_account_fails_the_call(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    call = make_call(engine, account)
    with session_scope(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        session.delete(row)
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    assert load(engine, call.id).error == "account_missing"
    assert harness.requests == []


def test_app_removed_from_catalog_fails_the_call(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    account = make_account(engine, tenant, vault, app="slack")
    call = make_call(engine, account, app="no-longer-there")
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    assert load(engine, call.id).error == "app_unavailable"
    assert harness.requests == []


def test_redirect_off_the_app_hosts_keeps_credentials_home(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    call = make_call(engine, account)
    harness.answer(lambda _: httpx.Response(302, headers={"Location": "https://evil.com/x"}))
    assert harness.run([call.id]) == {call.id: CallStatus.COMPLETED}
    assert load(engine, call.id).network_code == "302"
    assert [r.url.host for r in harness.requests] == ["slack.com"]


# --- many calls per message ------------------------------------------------------------------


def make_calls(engine: Engine, account: ConnectedAccount, n: int, **kw: Any) -> list[FunctionCall]:
    return [
        make_call(engine, account, url=f"https://slack.com/api/items.get?n={i}", **kw)
        for i in range(n)
    ]


def statuses_in_db(engine: Engine, call_ids: Sequence[str]) -> dict[str, CallStatus]:
    with Session(engine) as session:
        rows = session.exec(select(FunctionCall).where(col(FunctionCall.id).in_(call_ids)))
        return {row.id: row.status for row in rows}


def test_batch_of_fifty_runs_every_call(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given 50 queued calls of one account
    ids = [c.id for c in make_calls(engine, account, 50)]
    # When one message carries all of them
    statuses = harness.run(ids)
    # Then every one is completed, in the database too
    assert statuses == dict.fromkeys(ids, CallStatus.COMPLETED)
    assert statuses_in_db(engine, ids) == dict.fromkeys(ids, CallStatus.COMPLETED)
    # and each has exactly one attempt, number 1
    rows = attempts_of(engine, ids)
    assert len(rows) == 50
    assert sorted(r.call_id for r in rows) == sorted(ids)
    assert {r.number for r in rows} == {1}
    assert {r.network_code for r in rows} == {"200"}
    # and the upstream got each request once
    assert sorted(str(r.url) for r in harness.requests) == sorted(
        f"https://slack.com/api/items.get?n={i}" for i in range(50)
    )
    # and waiters heard of each call exactly once, in one burst or several
    assert sorted(harness.notified) == sorted(ids)
    assert all(burst for burst in harness.bursts)
    # and the account's credentials were decrypted once for the whole message
    assert len(harness.vault.decrypted) == 1


def test_bulk_calls_are_announced_by_id_alone(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a call of a batch (nobody waits on it with Prefer: wait)
    call = make_call(engine, account)
    with session_scope(engine) as session:
        row = session.get(FunctionCall, call.id)
        assert row is not None
        row.batch_id = "bat_1"
        session.add(row)
    # When it runs
    harness.run([call.id])
    # Then waiters hear its id, and no result is sent to every API process
    assert harness.notified == [call.id]
    assert harness.answered == []


def test_calls_of_a_message_are_in_flight_together(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given 20 calls, and an upstream that answers none until all 20 have arrived
    n = 20
    ids = [c.id for c in make_calls(engine, account, n)]
    all_arrived = asyncio.Event()
    arrived: list[str] = []

    async def gather(request: httpx.Request) -> httpx.Response:
        arrived.append(str(request.url))
        if len(arrived) == n:
            all_arrived.set()
        try:
            await asyncio.wait_for(all_arrived.wait(), 30)  # only a guard against a hang
        except TimeoutError:
            return httpx.Response(504, json={"in_flight": len(arrived)})
        return httpx.Response(200, json={"in_flight": len(arrived)})

    harness.answer(gather)
    # When one message carries them all
    statuses = harness.run(ids)
    # Then they were sent at once, not one after another
    assert statuses == dict.fromkeys(ids, CallStatus.COMPLETED)
    with Session(engine) as session:
        outputs = [session.get(FunctionCall, i) for i in ids]
    assert {(c.network_code, json.dumps(c.output)) for c in outputs if c} == {
        ("200", json.dumps({"in_flight": n}))
    }


def test_finished_calls_are_stored_while_others_are_in_flight(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a message with a fast call and a slow one that answers only once the fast one
    # has been stored and announced
    fast = make_call(engine, account, url="https://slack.com/api/fast")
    slow = make_call(engine, account, url="https://slack.com/api/slow")
    release = asyncio.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/fast":
            return httpx.Response(200, json={"which": "fast"})
        loops.append(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(release.wait(), 30)  # only a guard against a hang
        except TimeoutError:
            return httpx.Response(504)
        return httpx.Response(200, json={"which": "slow"})

    seen_while_slow_in_flight: list[dict[str, CallStatus]] = []
    notify = harness.runtime.notify

    def notify_and_release(call_ids: Sequence[str], results: Sequence[CallResult]) -> None:
        notify(call_ids, results)
        if list(call_ids) == [fast.id]:
            seen_while_slow_in_flight.append(statuses_in_db(engine, [fast.id, slow.id]))
            loops[0].call_soon_threadsafe(release.set)

    harness.answer(handler)
    runtime = replace(harness.runtime, notify=notify_and_release)
    # When the message runs
    statuses = execute_calls([slow.id, fast.id], runtime)
    # Then the fast call was stored and announced while the slow one was still running
    assert seen_while_slow_in_flight == [
        {fast.id: CallStatus.COMPLETED, slow.id: CallStatus.RUNNING}
    ]
    assert harness.bursts == [[fast.id], [slow.id]]
    assert statuses == {fast.id: CallStatus.COMPLETED, slow.id: CallStatus.COMPLETED}
    assert load(engine, slow.id).network_code == "200"


def test_credentials_are_decrypted_once_per_account(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given three calls on each of two accounts with different tokens
    first = make_account(engine, tenant, vault, credentials={"access_token": "tok-first"})
    second = make_account(engine, tenant, vault, credentials={"access_token": "tok-second"})
    calls = make_calls(engine, first, 3) + make_calls(engine, second, 3)
    # When one message carries all six
    statuses = harness.run([c.id for c in calls])
    # Then each account was decrypted once, and each call went with its own account's token
    assert set(statuses.values()) == {CallStatus.COMPLETED}
    assert sorted(harness.vault.decrypted) == sorted(
        [first.credentials_enc, second.credentials_enc]
    )
    tokens = sorted(r.headers["Authorization"] for r in harness.requests)
    assert tokens == ["Bearer tok-first"] * 3 + ["Bearer tok-second"] * 3


def test_unreadable_credentials_fail_only_their_account_calls(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given a batch mixing calls of a readable account and of one encrypted under another key
    good = make_account(engine, tenant, vault)
    foreign = Vault([generate_encryption_key()]).encrypt({"access_token": SECRET}, bound_to="ca_x")
    bad = make_account(engine, tenant, vault, encrypted=foreign)
    good_calls = make_calls(engine, good, 2)
    bad_calls = make_calls(engine, bad, 2)
    ids = [c.id for pair in zip(good_calls, bad_calls, strict=True) for c in pair]
    # When the message runs
    statuses = harness.run(ids)
    # Then the readable account's calls complete and the others fail, unsent
    assert statuses == {
        **{c.id: CallStatus.COMPLETED for c in good_calls},
        **{c.id: CallStatus.FAILED for c in bad_calls},
    }
    assert {load(engine, c.id).error for c in bad_calls} == {"credentials_invalid"}
    assert len(harness.requests) == 2
    assert sorted(harness.notified) == sorted(ids)
    # and the unreadable account was tried once, not once per call
    assert len(harness.vault.decrypted) == 2


def test_credentials_that_do_not_fit_the_app_fail_the_call_not_the_message(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given a message with a good call and one whose stored credentials no longer fit its app
    # (username/password on a bearer app, e.g. after the app's auth changed in the catalog)
    good = make_account(engine, tenant, vault)
    odd = make_account(engine, tenant, vault, credentials={"username": "u", "password": "p"})
    ok_call = make_call(engine, good)
    odd_call = make_call(engine, odd)
    # When the message runs
    statuses = harness.run([ok_call.id, odd_call.id])
    # Then the odd call fails with credentials_invalid and the good one still completes:
    # neither is left `running` for the sweeper to re-send or give up on
    assert statuses == {ok_call.id: CallStatus.COMPLETED, odd_call.id: CallStatus.FAILED}
    assert load(engine, odd_call.id).error == "credentials_invalid"
    assert load(engine, ok_call.id).status is CallStatus.COMPLETED


def test_batch_outcomes_are_stored_per_call(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given calls whose upstream answers 200, 404, or refuses the connection
    ok = make_call(engine, account, url="https://slack.com/api/ok")
    missing = make_call(engine, account, url="https://slack.com/api/missing")
    refused = make_call(
        engine,
        account,
        url="https://slack.com/api/refused",
        attempt_count=RetryPolicy().max_attempts - 1,
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/refused":
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/api/missing":
            return httpx.Response(404, json={"error": "not_found"})
        return httpx.Response(200, json={"ok": True})

    harness.answer(handler)
    # When one message carries the three
    statuses = harness.run([ok.id, missing.id, refused.id])
    # Then each call has its own result and attempt
    assert statuses == {
        ok.id: CallStatus.COMPLETED,
        missing.id: CallStatus.COMPLETED,
        refused.id: CallStatus.FAILED,
    }
    # and the task's result counts them per status
    assert tally([ok.id, missing.id, refused.id], statuses) == {"completed": 2, "failed": 1}
    assert load(engine, ok.id).output == {"ok": True}
    assert load(engine, missing.id).output == {"error": "not_found"}
    assert load(engine, refused.id).error == "connect_error"
    assert [(a.network_code, a.error) for a in attempts(engine, ok.id)] == [("200", None)]
    assert [(a.network_code, a.error) for a in attempts(engine, missing.id)] == [("404", None)]
    assert [(a.network_code, a.error) for a in attempts(engine, refused.id)] == [
        (None, "connect_error")
    ]


def test_only_claimable_calls_of_a_message_run(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a message naming calls in every state, and an id that does not exist
    queued = make_call(engine, account, url="https://slack.com/api/queued")
    due = make_call(engine, account, url="https://slack.com/api/due")
    not_due = make_call(engine, account, url="https://slack.com/api/not-due")
    with session_scope(engine) as session:
        for call, at in ((due, NOW - timedelta(seconds=1)), (not_due, NOW + timedelta(hours=1))):
            row = session.get(FunctionCall, call.id)
            assert row is not None
            row.status, row.next_attempt_at, row.attempt_count = CallStatus.RETRYING, at, 1
    cancelled = make_call(engine, account, status=CallStatus.CANCELLED)
    completed = make_call(engine, account, status=CallStatus.COMPLETED)
    running = make_call(engine, account, status=CallStatus.RUNNING)
    unknown = new_id("fc")
    ids = [cancelled.id, queued.id, unknown, completed.id, due.id, running.id, not_due.id]
    # When the message runs
    statuses = harness.run(ids)
    # Then only the queued call and the due retry ran
    assert statuses == {queued.id: CallStatus.COMPLETED, due.id: CallStatus.COMPLETED}
    assert tally(ids, statuses) == {"completed": 2, "not_run": 5}
    assert sorted(r.url.path for r in harness.requests) == ["/api/due", "/api/queued"]
    assert sorted(harness.notified) == sorted([queued.id, due.id])
    assert load(engine, due.id).attempt_count == 2
    assert [a.number for a in attempts(engine, due.id)] == [2]
    # and the others are untouched
    assert statuses_in_db(engine, [cancelled.id, completed.id, running.id, not_due.id]) == {
        cancelled.id: CallStatus.CANCELLED,
        completed.id: CallStatus.COMPLETED,
        running.id: CallStatus.RUNNING,
        not_due.id: CallStatus.RETRYING,
    }
    assert attempts_of(engine, [cancelled.id, completed.id, running.id, not_due.id]) == []


def test_duplicate_delivery_of_a_message_does_nothing(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a message of 10 calls that already ran
    ids = [c.id for c in make_calls(engine, account, 10)]
    assert harness.run(ids) == dict.fromkeys(ids, CallStatus.COMPLETED)
    # When the broker delivers the same message again
    again = harness.run(ids)
    # Then nothing is sent, stored or announced a second time
    assert again == {}
    assert len(harness.requests) == 10
    assert sorted(harness.notified) == sorted(ids)
    assert len(attempts_of(engine, ids)) == 10
    assert {load(engine, i).attempt_count for i in ids} == {1}


def test_id_repeated_within_a_message_runs_once(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    call = make_call(engine, account)
    statuses = harness.run([call.id, call.id])
    assert statuses == {call.id: CallStatus.COMPLETED}
    assert tally([call.id, call.id], statuses) == {"completed": 1}
    assert len(harness.requests) == 1
    assert harness.notified == [call.id]
    assert len(attempts(engine, call.id)) == 1


def test_empty_message_does_nothing(harness: Harness) -> None:
    assert harness.run([]) == {}
    assert harness.requests == []
    assert harness.bursts == []


# --- a call's own retry and timeout params ------------------------------------------------------


def test_a_call_asking_for_one_attempt_is_not_retried(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a call that asked for a single attempt, and an upstream answering 503
    call = make_call(engine, account, options={"retry": {"max_attempts": 1}})
    harness.answer(lambda _: httpx.Response(503, json={"ok": False}))
    # When it runs / Then the answer stands: the call is completed with the 503
    assert harness.run([call.id]) == {call.id: CallStatus.COMPLETED}
    stored = load(engine, call.id)
    assert stored.network_code == "503"
    [row] = attempts(engine, call.id)
    assert row.decision == "done: upstream answered 503; no attempts left (1)"


def test_a_call_may_ask_to_retry_other_statuses(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a GET asking to retry 500, and an upstream answering 500
    call = make_call(engine, account, options={"retry": {"on_status": [500]}})
    harness.answer(lambda _: httpx.Response(500, text="oops"))
    # When it runs / Then it will be tried again
    assert harness.run([call.id]) == {call.id: CallStatus.RETRYING}
    [row] = attempts(engine, call.id)
    assert row.decision.startswith("retry in ")


def test_a_calls_own_total_timeout_cuts_a_slow_upstream(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given a call allowing 0.2 s in all and one attempt, and an upstream that takes 30 s
    call = make_call(
        engine,
        account,
        options={"retry": {"max_attempts": 1}, "timeout": {"total_s": 0.2}},
    )

    async def slow(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    harness.answer(slow)
    # When it runs / Then it fails as a timeout at the call's own deadline
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    stored = load(engine, call.id)
    assert stored.error == "timeout"
    assert stored.error_message == "no complete answer within 0.2 s"


@pytest.mark.parametrize(
    ("status", "error"),
    [("disabled", "account_disabled"), ("needs_reauth", "credentials_revoked")],
)
def test_a_call_of_an_account_no_longer_active_fails_unsent(
    engine: Engine, account: ConnectedAccount, harness: Harness, status: str, error: str
) -> None:
    # Given a call queued before its account was disabled or lost its credentials
    call = make_call(engine, account)
    with session_scope(engine) as session:
        stored = session.get(ConnectedAccount, account.id)
        assert stored is not None
        stored.status = status
        session.add(stored)
    # When it runs / Then it fails without reaching the upstream
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    assert load(engine, call.id).error == error
    assert harness.requests == []


# --- whatever the upstream sends, the call ends -------------------------------------------------


def test_an_outcome_that_cannot_be_processed_fails_its_call_not_the_message(
    engine: Engine, account: ConnectedAccount, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two calls of one message, and a bug met while classifying the first one's answer
    odd, fine = make_call(engine, account), make_call(engine, account)
    real = __import__("worker.calls.pipeline", fromlist=["judge"]).judge

    def judge(c: Any, outcome: Any, app: Any, **kwargs: Any) -> Any:
        if c.call.id == odd.id:
            raise ValueError(f"cannot classify, holding {SECRET}")
        return real(c, outcome, app, **kwargs)

    monkeypatch.setattr("worker.calls.pipeline.judge", judge)
    # When the message runs
    statuses = harness.run([odd.id, fine.id])
    # Then the odd call failed with a reason that names no secret, the other completed
    assert statuses == {odd.id: CallStatus.FAILED, fine.id: CallStatus.COMPLETED}
    stored = load(engine, odd.id)
    assert stored.error == "internal_error"
    assert SECRET not in (stored.error_message or "")


def test_an_answer_the_database_refuses_ends_the_call_failed_instead_of_running_forever(
    engine: Engine, account: ConnectedAccount, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an output the database's JSON encoder refuses (nested past 255 levels)
    call = make_call(engine, account)
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    monkeypatch.setattr("worker.calls.outcome.decode_output", lambda body, ctype: deep)
    # When the call runs
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    # Then it is stored failed, saying so, and its waiters are told
    stored = load(engine, call.id)
    assert (stored.status, stored.error) == (CallStatus.FAILED, "unstorable_answer")
    assert harness.notified == [call.id]


def test_an_answer_the_database_refuses_fails_its_call_alone_in_a_group(
    engine: Engine, account: ConnectedAccount, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two calls of one message, the first one's output one the database's JSON
    # encoder refuses (nested past 255 levels): a group stored as one statement fails whole
    odd, fine = make_call(engine, account), make_call(engine, account)
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    real = __import__("worker.calls.outcome", fromlist=["decode_output"]).decode_output
    calls = iter([deep])
    monkeypatch.setattr(
        "worker.calls.outcome.decode_output",
        lambda body, ctype: next(calls, None) or real(body, ctype),
    )
    # When the message runs
    statuses = harness.run([odd.id, fine.id])
    # Then only the refused one fails, saying so; the other is stored as it was answered,
    # and each has its attempt
    assert sorted(statuses.values()) == sorted([CallStatus.FAILED, CallStatus.COMPLETED])
    failed = next(i for i, s in statuses.items() if s is CallStatus.FAILED)
    assert load(engine, failed).error == "unstorable_answer"
    assert len(attempts_of(engine, [odd.id, fine.id])) == 2


def test_retry_after_infinity_ends_the_call_rate_limited(
    engine: Engine, account: ConnectedAccount, harness: Harness
) -> None:
    # Given an upstream answering 429 with `Retry-After: inf`
    call = make_call(engine, account)
    harness.answer(lambda _: httpx.Response(429, headers={"Retry-After": "inf"}))
    # When the call runs / Then it ends at once instead of waiting forever (or crashing)
    assert harness.run([call.id]) == {call.id: CallStatus.FAILED}
    assert load(engine, call.id).error == "rate_limited"


def test_a_call_no_request_can_be_built_for_fails_alone(
    engine: Engine, account: ConnectedAccount, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given a stored query-auth key too long for any URL (stored before keys had a limit),
    # and another account's call in the same message
    long_key = "k" * 70_000
    hunter = make_account(engine, tenant, vault, app="hunter", credentials={"api_key": long_key})
    poisoned = make_call(engine, hunter, url="https://api.hunter.io/v2/account")
    fine = make_call(engine, account)
    # When the message runs
    statuses = harness.run([poisoned.id, fine.id])
    # Then the poisoned call fails on its own, saying why without quoting the key, and the
    # other call completes: the message was never lost
    assert statuses == {poisoned.id: CallStatus.FAILED, fine.id: CallStatus.COMPLETED}
    stored = load(engine, poisoned.id)
    assert stored.error == "invalid_request"
    assert long_key[:20] not in (stored.error_message or "")
    assert len(harness.requests) == 1


def test_a_call_ends_with_one_line_that_shows_its_path_alone(
    engine: Engine, account: ConnectedAccount, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a call whose URL carries a secret in its query string
    call = make_call(engine, account, url="https://slack.com/api/chat.postMessage?api_key=k-123")
    # When the worker executes it
    with caplog.at_level(logging.INFO, logger=CALLS_LOGGER):
        harness.run([call.id])
    # Then one call.finished event says what happened, with the path but not the query
    [record] = [r for r in caplog.records if r.name == CALLS_LOGGER]
    fields = vars(record)
    assert fields["event"] == "call.finished"
    assert (fields["method"], fields["path"]) == ("GET", "/api/chat.postMessage")
    assert (fields["status"], fields["network_code"], fields["attempt"]) == ("completed", "200", 1)
    for line in (JsonFormatter().format(record), TerminalFormatter().format(record)):
        assert "k-123" not in line
        assert "api_key" not in line


@pytest.mark.parametrize("broker_takes_it", [True, False])
def test_a_finished_calls_event_is_published_with_its_tenant_or_marked_unpublished(
    engine: Engine, account: ConnectedAccount, harness: Harness, broker_takes_it: bool
) -> None:
    from models.db.tables import WebhookDelivery
    from models.webhooks.signing import message_id

    # Given a call with a callback URL, and a broker that takes what is published, or not
    call = make_call(engine, account, callback_url="https://hooks.example.com/cb")
    broker = RecordingPublisher()
    broker.takes_deliveries = broker_takes_it
    harness.runtime = replace(harness.runtime, publisher=broker)
    # When it ends
    assert harness.run([call.id]) == {call.id: CallStatus.COMPLETED}
    # Then its event is published onto its tenant's list ...
    msg = message_id(call.id)
    assert broker.deliveries == [msg]
    assert broker.tenant_of[msg] == account.tenant_id
    # ... and, if the broker refused it, marked unpublished for the next sweep
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, msg)
        assert delivery is not None
        assert (delivery.published_at is not None) is broker_takes_it
