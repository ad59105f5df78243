"""One call through the pipeline: claim, credentials, send, classify, record, notify."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from models.catalog import Catalog
from models.db import session_scope
from models.ids import new_id
from models.secrets import Vault, generate_encryption_key
from models.states import CallStatus
from models.tables import CallAttempt, ConnectedAccount, FunctionCall, Tenant
from worker.pipeline import Runtime, execute_call
from worker.send import SendPolicy

SECRET = "xoxb-pipeline-secret-token"
NOW = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


@dataclass
class Harness:
    """A Runtime whose upstream and notifications are recorded."""

    runtime: Runtime
    requests: list[httpx.Request]
    notified: list[str]
    handler: list[Callable[[httpx.Request], httpx.Response]] = field(default_factory=list)

    def answer(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler[:] = [handler]


@pytest.fixture
def harness(engine: Engine, catalog: Catalog, vault: Vault) -> Iterator[Harness]:
    requests: list[httpx.Request] = []
    notified: list[str] = []
    handlers: list[Callable[[httpx.Request], httpx.Response]] = [
        lambda _: httpx.Response(200, json={"ok": True})
    ]

    def transport(request: httpx.Request) -> httpx.Response:
        request.read()
        requests.append(request)
        return handlers[0](request)

    client = httpx.Client(transport=httpx.MockTransport(transport))
    runtime = Runtime(
        engine=engine,
        client=client,
        catalog=catalog,
        vault=vault,
        send_policy=SendPolicy(
            overrides={}, allow_private_networks=True, max_response_bytes=10_000
        ),
        lease_s=60.0,
        clock=lambda: NOW,
        notify=notified.append,
    )
    yield Harness(runtime, requests, notified, handlers)
    client.close()


def make_account(
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    *,
    app: str = "slack",
    credentials: dict[str, Any] | None = None,
    encrypted: str | None = None,
) -> ConnectedAccount:
    account = ConnectedAccount(
        id=new_id("ca"),
        tenant_id=tenant.id,
        app=app,
        user_id="user-1",
        credentials_enc=encrypted or vault.encrypt(credentials or {"access_token": SECRET}),
    )
    with session_scope(engine) as session:
        session.add(account)
    return account


def make_call(
    engine: Engine,
    tenant: Tenant,
    account: ConnectedAccount,
    *,
    method: str = "GET",
    url: str = "https://slack.com/api/conversations.list?limit=2",
    status: CallStatus = CallStatus.QUEUED,
    app: str = "slack",
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> FunctionCall:
    call = FunctionCall(
        id=new_id("fc"),
        tenant_id=tenant.id,
        app=app,
        function=f"{app}-passthrough-request",
        user_id=account.user_id,
        connected_account_id=account.id,
        method=method,
        url=url,
        request_headers=headers,
        request_body=body,
        status=status,
    )
    with session_scope(engine) as session:
        session.add(call)
    return call


def load(engine: Engine, call_id: str) -> FunctionCall:
    with Session(engine) as session:
        call = session.get(FunctionCall, call_id)
        assert call is not None
        return call


def attempts(engine: Engine, call_id: str) -> list[CallAttempt]:
    with Session(engine) as session:
        return list(session.exec(select(CallAttempt).where(col(CallAttempt.call_id) == call_id)))


def test_execute_completes_the_call(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given a queued call and an upstream answering JSON
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account)
    harness.answer(
        lambda _: httpx.Response(
            200,
            json={"ok": True, "channels": ["general"]},
            headers={"X-Request-Id": "up-1", "Set-Cookie": "s=1"},
        )
    )
    # When the worker executes it
    status = execute_call(call.id, harness.runtime)
    # Then it is completed with the upstream result stored
    assert status is CallStatus.COMPLETED
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
    # and the upstream got the request as asked
    assert len(harness.requests) == 1
    assert str(harness.requests[0].url) == "https://slack.com/api/conversations.list?limit=2"
    assert harness.requests[0].method == "GET"


def test_account_last_used_is_set(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account)
    execute_call(call.id, harness.runtime)
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        assert row is not None
        assert row.last_used_at == NOW


def test_second_execution_does_nothing(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given a call that was already executed once
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account)
    assert execute_call(call.id, harness.runtime) is CallStatus.COMPLETED
    # When the same id is delivered again
    again = execute_call(call.id, harness.runtime)
    # Then nothing happens
    assert again is None
    assert len(harness.requests) == 1
    assert harness.notified == [call.id]
    assert len(attempts(engine, call.id)) == 1
    assert load(engine, call.id).attempt_count == 1


def test_unknown_id_does_nothing(harness: Harness) -> None:
    assert execute_call(new_id("fc"), harness.runtime) is None
    assert harness.requests == []
    assert harness.notified == []


def test_upstream_404_is_completed(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account)
    harness.answer(lambda _: httpx.Response(404, json={"ok": False, "error": "not_found"}))
    assert execute_call(call.id, harness.runtime) is CallStatus.COMPLETED
    stored = load(engine, call.id)
    assert stored.status is CallStatus.COMPLETED
    assert stored.network_code == "404"
    assert stored.output == {"ok": False, "error": "not_found"}
    assert stored.error is None


def test_connect_error_is_failed(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    harness.answer(refuse)
    assert execute_call(call.id, harness.runtime) is CallStatus.FAILED
    stored = load(engine, call.id)
    assert stored.status is CallStatus.FAILED
    assert stored.error == "connect_error"
    assert stored.error_message
    assert stored.network_code is None
    assert stored.finished_at == NOW
    rows = attempts(engine, call.id)
    assert [r.error for r in rows] == ["connect_error"]
    assert harness.notified == [call.id]


@pytest.mark.parametrize("status", [CallStatus.CANCELLED, CallStatus.COMPLETED, CallStatus.FAILED])
def test_finished_call_is_not_executed(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness, status: CallStatus
) -> None:
    # Given a call that was cancelled (or already ended)
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account, status=status)
    # When a message for it arrives
    result = execute_call(call.id, harness.runtime)
    # Then nothing is sent or recorded
    assert result is None
    assert harness.requests == []
    assert harness.notified == []
    assert load(engine, call.id).status is status
    assert attempts(engine, call.id) == []


def test_authorization_reaches_upstream_but_is_never_stored(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given a call with caller headers and a JSON body
    account = make_account(engine, tenant, vault)
    call = make_call(
        engine,
        tenant,
        account,
        method="POST",
        url="https://slack.com/api/chat.postMessage",
        headers={"X-Trace": "t-1"},
        body={"channel": "C1", "text": "hi"},
    )
    harness.answer(lambda _: httpx.Response(200, json={"ok": True}))
    # When executed
    assert execute_call(call.id, harness.runtime) is CallStatus.COMPLETED
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
    for row in attempts(engine, call.id):
        assert SECRET not in f"{row.error_message} {row.decision}"


def test_api_key_app_uses_its_header(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness, catalog: Catalog
) -> None:
    header_apps = [a for a in catalog if a.auth.type == "header" and not a.template_fields]
    if not header_apps:
        pytest.skip("no header-auth app in the catalog")
    app = header_apps[0]
    assert app.auth.name is not None
    account = make_account(engine, tenant, vault, app=app.slug, credentials={"api_key": "k-77"})
    base, _ = app.resolve(None)
    call = make_call(engine, tenant, account, app=app.slug, url=f"{base}/ping")
    assert execute_call(call.id, harness.runtime) is CallStatus.COMPLETED
    assert harness.requests[0].headers[app.auth.name] == f"{app.auth.prefix}k-77"


def test_undecryptable_credentials_fail_the_call(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    # Given an account encrypted under a key the worker does not have
    foreign = Vault([generate_encryption_key()]).encrypt({"access_token": SECRET})
    account = make_account(engine, tenant, vault, encrypted=foreign)
    call = make_call(engine, tenant, account)
    # When executed / Then it fails without reaching the upstream
    assert execute_call(call.id, harness.runtime) is CallStatus.FAILED
    stored = load(engine, call.id)
    assert stored.error == "credentials_invalid"
    assert harness.requests == []
    assert harness.notified == [call.id]


def test_deleted_account_fails_the_call(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account)
    with session_scope(engine) as session:
        row = session.get(ConnectedAccount, account.id)
        session.delete(row)
    assert execute_call(call.id, harness.runtime) is CallStatus.FAILED
    assert load(engine, call.id).error == "account_missing"
    assert harness.requests == []


def test_app_removed_from_catalog_fails_the_call(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    account = make_account(engine, tenant, vault, app="slack")
    call = make_call(engine, tenant, account, app="no-longer-there")
    assert execute_call(call.id, harness.runtime) is CallStatus.FAILED
    assert load(engine, call.id).error == "app_unavailable"
    assert harness.requests == []


def test_redirect_off_the_app_hosts_keeps_credentials_home(
    engine: Engine, tenant: Tenant, vault: Vault, harness: Harness
) -> None:
    account = make_account(engine, tenant, vault)
    call = make_call(engine, tenant, account)
    harness.answer(lambda _: httpx.Response(302, headers={"Location": "https://evil.com/x"}))
    assert execute_call(call.id, harness.runtime) is CallStatus.COMPLETED
    assert load(engine, call.id).network_code == "302"
    assert [r.url.host for r in harness.requests] == ["slack.com"]
