"""Submitting a call (`POST /{app}-passthrough-request`, `POST /function-calls`): what is
accepted, queued and published, what is refused before anything is written, idempotency
keys, and a call's own retry and timeout params."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, event, update
from sqlmodel import col

from models.db.engine import session_scope, utcnow
from models.db.tables import FunctionCall
from tests.api.conftest import CALL, Caller, PublishedIds, log, stored_call, submit
from tests.api.test_errors import assert_error_shape

# --- submitting ---------------------------------------------------------------------------


def test_valid_call_is_queued_and_published(caller: Caller, published: PublishedIds) -> None:
    # Given a user with a Slack account
    account_id = caller.connect()
    # When the tenant submits a call for them
    response = submit(caller)
    # Then it is accepted, queued, and its id handed to the broker
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["function"] == "slack-passthrough-request"
    assert body["app"] == "slack"
    assert body["method"] == "GET"
    assert body["url"] == "https://slack.com/api/conversations.list?limit=2"
    assert body["connected_account_id"] == account_id
    assert body["user_id"] == "user-1"
    assert body["network_code"] is None
    assert published.ids == [body["id"]]
    assert published.tenant_of == {body["id"]: caller.tenant.id}  # on its tenant's list
    # and it can be read back
    got = caller.client.get(f"/function-calls/{body['id']}", headers=caller.headers())
    assert got.status_code == 200
    assert got.json()["status"] == "queued"
    assert got.json()["attempts"] == []


def test_sdk_form_is_accepted(caller: Caller, published: PublishedIds) -> None:
    caller.connect()
    response = caller.client.post(
        "/function-calls",
        json={
            "function": "slack-passthrough-request",
            "params": {
                "method": "post",
                "url": "https://slack.com/api/chat.postMessage",
                "body": {"channel": "C1", "text": "hi"},
            },
        },
        headers=caller.headers(),
    )
    assert response.status_code == 202, response.text
    assert response.json()["method"] == "POST"
    assert published.ids == [response.json()["id"]]


def test_call_names_account_by_id(caller: Caller) -> None:
    caller.connect(user="user-1")
    second = caller.connect(user="user-1", token="another")
    response = caller.client.post(
        "/slack-passthrough-request",
        json={**CALL, "connected_account_id": second},
        headers=caller.headers(user=None),
    )
    assert response.status_code == 202, response.text
    assert response.json()["connected_account_id"] == second


def test_on_postgres_a_call_is_two_statements_on_the_drivers_cursor(
    caller: Caller, engine: Engine, direct_runs: list[tuple[str, int]]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes a call in one transaction, through SQLAlchemy")
    account_id = caller.connect()
    api_engine = caller.client.app.state.engine  # type: ignore[attr-defined]
    through_sqlalchemy: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *_: object) -> None:
        through_sqlalchemy.append(statement)

    direct_runs.clear()
    event.listen(api_engine, "before_cursor_execute", seen)
    try:
        response = submit(caller)
    finally:
        event.remove(api_engine, "before_cursor_execute", seen)
    assert response.status_code == 202, response.text
    # The account's SELECT and the call's INSERT, each committed as it runs: no BEGIN, no
    # COMMIT, and neither through SQLAlchemy's connection
    assert [sql.split()[0] for sql, _ in direct_runs] == ["SELECT", "INSERT"]
    assert not [s for s in through_sqlalchemy if "connected_account" in s or "INSERT" in s]
    # And the row is the one the transaction's path writes (with an Idempotency-Key)
    keyed = submit(caller, idempotency_key="k-same-row")
    direct, through = (
        stored_call(engine, r.json()["id"]).model_dump(exclude=_OWN) for r in (response, keyed)
    )
    assert direct == through
    assert direct["connected_account_id"] == account_id


# What differs between two calls of the same request
_OWN = {"id", "idempotency_key", "created_at", "published_at"}


def test_a_call_with_an_idempotency_key_keeps_its_transaction(
    caller: Caller, engine: Engine, direct_runs: list[tuple[str, int]]
) -> None:
    # Its key's row and its own are written together, through SQLAlchemy: nothing of it
    # runs on the driver's cursor
    caller.connect()
    first = submit(caller, idempotency_key="k-tx")
    again = submit(caller, idempotency_key="k-tx")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert direct_runs == []


def test_unknown_app_is_404(caller: Caller) -> None:
    response = submit(caller, app="no-such-app")
    assert response.status_code == 404
    assert_error_shape(response.json(), "unknown_app")
    sdk = caller.client.post(
        "/function-calls",
        json={"function": "no-such-app-passthrough-request", "params": CALL},
        headers=caller.headers(),
    )
    assert sdk.status_code == 404
    assert_error_shape(sdk.json(), "unknown_app")


def test_malformed_function_name_is_400(caller: Caller) -> None:
    response = caller.client.post(
        "/function-calls", json={"function": "slack", "params": CALL}, headers=caller.headers()
    )
    assert response.status_code == 400
    assert response.json()["error_details"][0]["field"] == "function"


def test_no_connected_account_is_400(caller: Caller) -> None:
    response = submit(caller, user="user-without-account")
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_connected_account")


def test_missing_user_is_400(caller: Caller) -> None:
    caller.connect()
    response = submit(caller, user=None)
    assert response.status_code == 400
    assert response.json()["error_details"][0]["field"] == "X-User-ID"


def test_account_of_another_app_is_400(caller: Caller) -> None:
    pipedrive = caller.connect(app="pipedrive")
    response = submit(caller, {**CALL, "connected_account_id": pipedrive})
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_connected_account")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "GET", "url": "https://evil.com/api/x"}, "url"),
        ({"method": "GET", "url": "http://slack.com/api/x"}, "url"),
        ({"method": "TRACE", "url": "x"}, "method"),
        (
            {"method": "GET", "url": "x", "headers": {"Authorization": "Bearer forged"}},
            "headers.Authorization",
        ),
        (
            {"method": "GET", "url": "x", "headers": {"authorization": "Bearer forged"}},
            "headers.authorization",
        ),
        ({"method": "GET", "url": "x", "callback_url": "not-a-url"}, "callback_url"),
    ],
)
def test_invalid_params_are_400_and_not_written(
    caller: Caller, published: PublishedIds, body: dict[str, Any], field: str
) -> None:
    # Given a user with an account
    caller.connect()
    # When the call is invalid
    response = submit(caller, body)
    # Then it is refused with the field named, and nothing is written or published
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert field in [d["field"] for d in response.json()["error_details"]]
    assert log(caller)["items"] == []
    assert published.ids == []


def test_rejected_calls_are_not_logged(caller: Caller, published: PublishedIds) -> None:
    # Given a mix of refusals: unknown app, no account, bad host, bad Prefer
    caller.connect()
    assert submit(caller, app="nope").status_code == 404
    assert submit(caller, user="nobody").status_code == 400
    assert submit(caller, {"method": "GET", "url": "https://evil.com/"}).status_code == 400
    assert submit(caller, prefer="wait=soon").status_code == 400
    # Then the log holds nothing for this tenant
    assert log(caller) == {"items": [], "next_cursor": None}
    assert published.ids == []


def test_another_tenants_account_cannot_be_used(
    caller: Caller, make_caller: Callable[[], Caller]
) -> None:
    account_id = caller.connect()
    other = make_caller()
    response = submit(other, {**CALL, "connected_account_id": account_id})
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_connected_account")


# --- idempotency --------------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_same_call(
    caller: Caller, published: PublishedIds
) -> None:
    caller.connect()
    first = submit(caller, idempotency_key="key-1")
    second = submit(caller, idempotency_key="key-1")
    assert first.status_code == 202
    assert second.status_code in (200, 202)
    assert second.json()["id"] == first.json()["id"]
    assert published.ids == [first.json()["id"]]
    assert len(log(caller)["items"]) == 1


def test_same_idempotency_key_with_other_body_is_409(caller: Caller) -> None:
    caller.connect()
    first = submit(caller, idempotency_key="key-2")
    other = submit(caller, {"method": "GET", "url": "users.list"}, idempotency_key="key-2")
    assert first.status_code == 202
    assert other.status_code == 409
    assert_error_shape(other.json(), "idempotency_conflict")
    assert len(log(caller)["items"]) == 1


def test_idempotency_keys_are_per_tenant(caller: Caller, make_caller: Callable[[], Caller]) -> None:
    other = make_caller()
    caller.connect()
    other.connect()
    a = submit(caller, idempotency_key="shared-key")
    b = submit(other, idempotency_key="shared-key")
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


def test_idempotency_key_names_a_new_call_after_24_hours(
    caller: Caller, engine: Engine, published: PublishedIds
) -> None:
    # Given a key first used 25 hours ago
    caller.connect()
    first = submit(caller, idempotency_key="key-old").json()["id"]
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(col(FunctionCall.id) == first)
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    # When it is used again, even with another body
    again = submit(caller, {"method": "GET", "url": "users.list"}, idempotency_key="key-old")
    # Then it names a new call, and the old one keeps its result but not the key
    assert again.status_code == 202, again.text
    assert again.json()["id"] != first
    with session_scope(engine) as session:
        old = session.get(FunctionCall, first)
        assert old is not None
        assert old.idempotency_key is None


def test_a_key_whose_call_was_deleted_names_a_new_call(caller: Caller, engine: Engine) -> None:
    # Given a key whose call was deleted by hand (retention deletes the key with the call)
    caller.connect()
    first = submit(caller, idempotency_key="key-gone").json()["id"]
    with session_scope(engine) as session:
        session.exec(delete(FunctionCall).where(col(FunctionCall.id) == first))
    # When it is used again / Then it names a new call
    again = submit(caller, idempotency_key="key-gone")
    assert again.status_code == 202, again.text
    assert again.json()["id"] != first


# --- a call's own retry and timeout params ------------------------------------------------


def test_retry_and_timeout_params_are_kept_with_the_call(caller: Caller, engine: Engine) -> None:
    # Given a call that asks for 2 attempts on 500/503 and a 5 s total timeout
    caller.connect()
    body = {
        **CALL,
        "retry": {"max_attempts": 2, "on_status": [500, 503]},
        "timeout": {"total_s": 5, "connect_s": 1.5},
    }
    # When submitted
    response = submit(caller, body)
    # Then it is accepted and the worker will find its params with it
    assert response.status_code == 202, response.text
    stored = stored_call(engine, response.json()["id"])
    assert stored.options == {
        "retry": {"max_attempts": 2, "on_status": [500, 503]},
        "timeout": {"total_s": 5, "connect_s": 1.5},
    }


def test_a_call_without_them_stores_none(caller: Caller, engine: Engine) -> None:
    caller.connect()
    response = submit(caller, {**CALL, "retry": {}, "timeout": {}})
    assert response.status_code == 202, response.text
    assert stored_call(engine, response.json()["id"]).options is None


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"retry": {"max_attempts": 11}}, "retry.max_attempts"),
        ({"retry": {"on_status": [200]}}, "retry.on_status"),
        ({"retry": {"backoff": 3}}, "retry.backoff"),
        ({"timeout": {"total_s": 0}}, "timeout.total_s"),
        ({"timeout": {"read_s": -1}}, "timeout.read_s"),
        ({"timeout": {"total_s": 91}}, "timeout.total_s"),  # over PASSTHRU_MAX_TIMEOUT_S
    ],
)
def test_bad_retry_or_timeout_params_are_400(
    caller: Caller, published: PublishedIds, extra: dict[str, Any], field: str
) -> None:
    caller.connect()
    response = submit(caller, {**CALL, **extra})
    assert response.status_code == 400, response.text
    body = response.json()
    assert_error_shape(body, "invalid_params")
    assert any(d["field"].endswith(field) for d in body["error_details"]), body
    assert published.ids == []


def test_same_idempotency_key_with_other_retry_params_is_409(caller: Caller) -> None:
    caller.connect()
    first = submit(caller, {**CALL, "retry": {"max_attempts": 2}}, idempotency_key="key-r")
    other = submit(caller, {**CALL, "retry": {"max_attempts": 3}}, idempotency_key="key-r")
    assert first.status_code == 202
    assert other.status_code == 409
    assert_error_shape(other.json(), "idempotency_conflict")


def test_an_end_user_named_in_utf8_in_a_header_is_the_one_a_body_names(caller: Caller) -> None:
    # Given an account connected for `josé`, the header sent as UTF-8 bytes (as HTTP clients
    # send it; the server reads header bytes as Latin-1)
    auth = {"Authorization": f"Bearer {caller.key}"}
    utf8 = {**auth, "X-User-ID": "josé".encode()}
    connected = caller.client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": {"access_token": "xoxb-test"}},
        headers=utf8,
    )
    assert connected.status_code == 201, connected.text
    assert connected.json()["user_id"] == "josé"
    # When a call names the same user in its body, or in the header / Then it finds the account
    by_body = caller.client.post(
        "/function-calls",
        json={"function": "slack-passthrough-request", "params": CALL, "user_id": "josé"},
        headers=auth,
    )
    assert by_body.status_code == 202, by_body.text
    by_header = caller.client.post("/slack-passthrough-request", json=CALL, headers=utf8)
    assert by_header.status_code == 202, by_header.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/slack-passthrough-request", CALL),
        ("POST", "/connected-accounts", {"app": "slack", "credentials": {"access_token": "x"}}),
    ],
)
def test_an_end_user_header_that_is_not_utf8_is_a_400_naming_it(
    caller: Caller, method: str, path: str, body: dict[str, Any]
) -> None:
    # (sent through the ASGI transport, which hands the header's bytes over as they are:
    # Latin-1 `é` alone, not UTF-8)
    headers = {"Authorization": f"Bearer {caller.key}", "X-User-ID": b"jos\xe9"}

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=caller.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, path, json=body, headers=headers)

    response = asyncio.run(send())
    assert response.status_code == 400, response.text
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"][0]["field"] == "X-User-ID"
